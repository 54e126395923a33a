"""Helpers the tests share (conftest.py holds the fixtures): ports, servers (S3 and a throw-away
PostgreSQL), drawings, tiny nets, a drawing saved into storage and the app's index."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from PIL import Image, ImageDraw

from digits import db, feedback, records, registry
from digits.nets import NETS
from digits.storage import LocalStorage
from main import create_app

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# Digits of another script: a plain regex \d matches them, and no storage key may hold them.
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def new_app(storage_dir: Path | str | None = None, **config) -> Flask:
    """The app as tests make it: TESTING, storage in `storage_dir` (if given), any settings."""
    if storage_dir is not None:
        config = {"STORAGE_URL": str(storage_dir), **config}
    return create_app({"TESTING": True, **config})


def tiny_bytes(net: str, variant: str = "a") -> bytes:
    """The tiny test nets (tests/fixtures/make_tiny_models.py): variants a and b differ."""
    return (FIXTURES / f"tiny-{net}-{variant}.tflite").read_bytes()


def unservable(store, net: str, tflite: bytes | None) -> str:
    """A version with its metrics card but a missing (None) or broken model.tflite."""
    version = registry.new_version()
    if tflite is not None:
        store.put(registry.version_key(net, version, "model.tflite"), tflite)
    store.put(registry.version_key(net, version, "metrics.json"), b'{"mnist_test_accuracy": 1}')
    return version


def make_models_dir(path: Path, variant: str = "a") -> Path:
    """A MODELS_DIR holding the tiny nets as the shipped "original" ones."""
    path.mkdir(parents=True, exist_ok=True)
    for net in NETS:
        shutil.copy(FIXTURES / f"tiny-{net}-{variant}.tflite", path / f"{net}.tflite")
        (path / f"{net}.keras").write_bytes(b"tiny keras placeholder")
        card = {"net": net, "mnist_test_accuracy": 0.5, "trained_at": "2026-11-24T00:00:00+00:00"}
        (path / f"{net}.json").write_text(json.dumps(card))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# moto's server checks If-Match / If-None-Match and then writes, in two steps, while another
# request's thread may write in between: two compare-and-swaps of the pointer could then both
# succeed, which real S3 never allows. Its conditional writes are made atomic here, as on S3.
MOTO_ATOMIC_PATCH = """
import threading
from moto.s3.responses import S3Response

lock = threading.Lock()

def atomic(method):
    def locked(self, *args, **kwargs):
        with lock:
            return method(self, *args, **kwargs)
    return locked

S3Response.put_object = atomic(S3Response.put_object)
S3Response.delete_object = atomic(S3Response.delete_object)
"""
MOTO_ATOMIC = MOTO_ATOMIC_PATCH + "import sys\nfrom moto.server import main\nmain(sys.argv[1:])\n"


class S3Server:
    """moto's standalone server: real HTTP on 127.0.0.1, started and stopped by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", MOTO_ATOMIC, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def drawing_png(
    lines=(((60, 40), (140, 40), (90, 170)),),
    width: int = 16,
    mode: str = "RGB",
    ground: str | tuple | None = None,
) -> bytes:
    """A 200×200 image with black strokes; `ground` defaults to white (clear white for RGBA).

    What the page sends is mode="RGBA", ground="white": opaque grey pixels.
    """
    background = ground or ((255, 255, 255, 0) if mode == "RGBA" else "white")
    image = Image.new(mode, (200, 200), background)
    draw = ImageDraw.Draw(image)
    for points in lines:
        draw.line(points, fill="black", width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def fake_prediction(
    pid: str, fnn: int = 3, cnn: int = 3, empty: bool = False, versions: dict | None = None
) -> dict:
    """A prediction's record as predictions.load returns it, with the nets' answers given."""

    def output(digit: int) -> dict:
        probabilities = [0.01] * 10
        probabilities[digit] = 0.91
        return {"digit": digit, "probabilities": probabilities}

    return {
        "id": pid,
        "created": "2026-11-24T10:00:00+00:00",
        "versions": versions or {"fnn": "original", "cnn": "original"},
        "fnn": output(fnn),
        "cnn": output(cnn),
        "empty": empty,
        "image": base64.b64encode(drawing_png()).decode(),
    }


def documented_schema(document: dict, path: str, method: str, status: int) -> dict:
    """The JSON schema the OpenAPI document gives for one answer, with its components."""
    response = document["paths"][path][method]["responses"][str(status)]
    return {**response["content"]["application/json"]["schema"], **document}


def start_gunicorn(port: int, storage_dir: Path, models_dir: Path, **settings: str):
    """gunicorn as in production (it reads gunicorn.conf.py from ROOT), with two workers."""
    env = {
        **os.environ,
        "STORAGE_URL": str(storage_dir),
        "MODELS_DIR": str(models_dir),
        "WEB_CONCURRENCY": "2",
        "LOG_REQUESTS": "off",
        **settings,
    }
    command = [str(BIN / "gunicorn"), "main:create_app()", "--bind", f"127.0.0.1:{port}"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return subprocess.Popen(command, cwd=ROOT, env=env, **quiet)


def worker_pids(master: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


class CountingStorage(LocalStorage):
    """Records each key read, and how many reads were in flight at once."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.read, self.in_flight, self.most = [], 0, 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            self.read.append(key)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.01)  # a round trip, as on S3
            return super().get(key)
        finally:
            with self.lock:
                self.in_flight -= 1


def stored_files(storage_dir):
    if not storage_dir.exists():
        return []
    return sorted(
        p.relative_to(storage_dir).as_posix()
        for p in storage_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


# --- a throw-away PostgreSQL server ------------------------------------------------------------


def save_indexed(app, png: bytes, label: str, source: str = "collect", **extra) -> str:
    """dataset.save_drawing into the app's storage, its row into the app's database."""
    from digits import dataset, db, records

    indexer = records.indexer(db.engine_of(app))
    return dataset.save_drawing(
        app.extensions["storage"], png, label, source, on_saved=indexer, **extra
    )


def add_done_export(app, job_id: str) -> None:
    """An export job's row as the worker leaves it once done (its zip is not written)."""
    now = time.time()
    row = {"id": job_id, "state": "done", "active": None, "created_at": now, "attempts": 1}
    row |= {"done": 0, "finished_at": now, "key": f"exports/{job_id}-1.zip"}
    with db.writing(db.engine_of(app)) as conn:
        conn.execute(db.export_jobs.insert().values(row))


def postgres_bin() -> Path:
    """Debian's newest PostgreSQL (15 on bookworm), or POSTGRES_BIN."""
    if os.environ.get("POSTGRES_BIN"):
        return Path(os.environ["POSTGRES_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


POSTGRES_BIN = postgres_bin()


def postgres_missing() -> str:
    """Why no PostgreSQL server can be started here, or "" if one can."""
    if not (POSTGRES_BIN / "initdb").exists():
        return f"no PostgreSQL: {POSTGRES_BIN}/initdb is missing (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb cannot run as the postgres user"
    return ""


class PostgresServer:
    """A cluster in a temporary folder, on 127.0.0.1 and a free port, trusting local users.

    As root, it runs as the `postgres` user (initdb refuses root); as anyone else, as them.
    Durability is off: the cluster lives only as long as the tests.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="digits-pg-"))
        self.data = self.dir / "data"
        self.databases = 0

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        self.resume()

    def pause(self) -> None:
        """Stop the server, keeping its data: an outage."""
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.dir / "server.log")
        self._run(
            str(POSTGRES_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            log,
            "-w",
            "start",
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """As Heroku writes it (`postgres://`): digits.db must read that too."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import sqlalchemy as sa

        from digits import db

        self.databases += 1
        name = f"digits_{self.databases}"
        engine = sa.create_engine(db.database_url(self.url()), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return self.url(name)


# --- feedback records for the records database ------------------------------------------------


def random_records(count: int, seed: int = 0) -> list[dict]:
    """Feedback records as digits/feedback.py builds them, over days, versions and answers."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    out = []
    for i in range(count):
        digit = rng.choice([*range(10), None])
        said = {
            net: digit if digit is not None and rng.random() < 0.8 else rng.randrange(10)
            for net in NETS
        }
        versions = {"fnn": rng.choice(["original", "v1"]), "cnn": rng.choice(["original", "v2"])}
        pid = f"p{i:05d}"
        record = feedback.build_record(
            fake_prediction(pid, said["fnn"], said["cnn"], versions=versions),
            digit,
            rng.random() < 0.7,
        )
        moment = start + timedelta(
            seconds=rng.randrange(4 * 86400), microseconds=rng.randrange(10**6)
        )
        record["created"] = moment.isoformat()
        out.append(record)
    return out


def reference_stats(given: list[dict]) -> dict:
    """What /api/stats said before the database, computed from every record in Python (the
    code stats.py had): the oracle the SQL aggregates must equal."""
    labelled = [r for r in given if r["digit"] is not None]
    totals = {"feedback": len(given)}
    for net in NETS:
        right = sum(1 for r in labelled if r[net]["digit"] == r["digit"])
        totals[net] = records.tally(right, len(labelled))
    groups: dict[tuple[str, str, str], list] = {}
    for r in labelled:
        answered = datetime.fromisoformat(r["created"]).timestamp()
        for net in NETS:
            version = r.get("versions", {}).get(net, "original")
            sums = groups.setdefault((r["created"][:10], net, version), [0, 0, 0.0])
            sums[0] += r[net]["digit"] == r["digit"]
            sums[1] += 1
            sums[2] += answered
    timeline = [
        {"date": date, "time": records.mean_time(seconds / total), "net": net, "version": version}
        | records.tally(correct, total)
        for (date, net, version), (correct, total, seconds) in sorted(groups.items())
    ]
    confusion = {net: [[0] * 10 for _ in range(10)] for net in NETS}
    for r in labelled:
        for net in NETS:
            confusion[net][r["digit"]][r[net]["digit"]] += 1
    per_digit = {
        net: [m[d][d] / sum(m[d]) if sum(m[d]) else None for d in range(10)]
        for net, m in confusion.items()
    }
    return {"totals": totals, "timeline": timeline, "per_digit": per_digit, "confusion": confusion}


def record_all(engine, items: list[dict]) -> None:
    for record in items:
        records.add_feedback(engine, record)


def in_two_processes(function, *args_of_each) -> list:
    """`function(*args)` in two fresh processes at once (each its own engine, as two dynos)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.starmap(function, args_of_each)


def table_rows(engine, table: sa.Table) -> list[tuple]:
    with db.reading(engine) as conn:
        return sorted(conn.execute(sa.select(table)).all())
