"""Volume bench: the app at a real site's volume, on SQLite and PostgreSQL, blobs on S3 (moto).

    .venv/bin/python bench/volume.py                      # 2k, 20k, 100k feedback; 50k drawings
    .venv/bin/python bench/volume.py --sizes 500,2000 --seconds 5      # a quick run
    .venv/bin/python bench/volume.py --databases sqlite --storage local

Storage is filled through the project's own code, growing from one size to the next: feedback
records as digits/feedback.py builds them (half to four fifths with consent, their drawings
copied into the dataset as feedback.save_to_dataset does, with the copy's marker), then drawings
saved as /hook saves them up to the size's drawing count (the issue's 2k/2k, 20k/20k, 100k/50k).
On S3 the project's storage code writes them into a folder in memory and bench/moto_fill.py
copies that folder into moto's backend in its own process (the same keys and bytes): through
moto's HTTP server a put costs about 6.5 ms of its CPU, half an hour for 100k/50k. Everything
measured goes over HTTP. Storage is shared: each database then gets the same rows as `flask db
rebuild` writes them, every learnable sample marked learned by both nets (the trainer's rows).

At each size and on each database, gunicorn starts as in production (gunicorn.conf.py: 2
workers of 4 threads, as on a standard-1x dyno) and is measured:
- the first GET /api/stats of a fresh process, and the uncached computation's p99 (20 runs
  against the database, the part of any later call that is not served from the cache);
- GET /api/dataset/counts, and a gallery page, cold (the first page, and one deep in it);
- the largest worker RSS after stats, counts and gallery pages;
- a trainer pass with nothing new (`learner.learn_pending`, TensorFlow imported beforehand);
- POST /api/predict p99 alone, then while 16 clients (bench/burst.py's hammer, a process of its
  own) ask without pause for /stats, /api/stats, /dataset, gallery pages and the counts;
- an export of every drawing as an admin asks for it (`measure_export`): the job is queued over
  HTTP, `flask exports --once` builds it in a process of its own (its peak RSS: the trainer
  worker's export thread adds about the same on top of the trainer), the status is polled
  meanwhile (the slowest answer of any export request), and the link is downloaded.
Baseline, in the same run: reading every feedback record from storage (a listing, then a GET
each), which is what the first stats call and every trainer pass cost before the database;
measured up to --baseline-max records (it takes minutes on moto above that). The export's
baseline is the zip built in memory as GET /api/dataset/export built it in a request before
exports were jobs (its process's peak RSS), up to --baseline-max drawings.

Results: a markdown table on stdout and in bench/out/volume.md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    BUCKET,
    HOST,
    SERVER_NICE,
    STROKES,
    page_png,
    percentile,
    start_gunicorn,
    stop_gunicorn,
    warm_up,
)
from digits import dataset, db, feedback, predictions, rebuild, records  # noqa: E402
from digits.nets import NETS  # noqa: E402
from digits.storage import LocalStorage, open_storage  # noqa: E402
from tests.helpers import free_port, worker_pids  # noqa: E402

WRITERS = 16  # storage writes in flight while filling
PNGS = [base64.b64encode(page_png(lines)).decode() for lines in STROKES]


@dataclass
class Filled:
    """What storage and the databases hold so far."""

    feedback: int = 0
    drawings: int = 0


@dataclass
class Batch:
    """What one step of the fill wrote to storage: the rows every database then gets."""

    feedback: list[dict]
    drawings: list[dict]


def output(digit: int) -> dict:
    probabilities = [0.02] * 10
    probabilities[digit] = 0.82
    return {"digit": digit, "probabilities": probabilities}


def feedback_record(i: int, rng: random.Random, consent: bool, start: datetime) -> dict:
    """A feedback record as feedback.build_record makes it, for a prediction made some time in
    the last 60 days."""
    moment = start + timedelta(seconds=rng.randrange(60 * 86400))
    digit = rng.choice([*range(10), None])
    said = {
        net: digit if digit is not None and rng.random() < 0.9 else rng.randrange(10)
        for net in NETS
    }
    prediction = {
        "id": predictions.new_id(moment),
        "created": moment.isoformat(),
        "versions": {"fnn": rng.choice(["original", "v1"]), "cnn": "original"},
        **{net: output(said[net]) for net in NETS},
        "image": PNGS[i % len(PNGS)],
    }
    record = feedback.build_record(prediction, digit, consent)
    record["created"] = (moment + timedelta(seconds=20)).isoformat()
    return record


def store_feedback(storage, record: dict) -> dict | None:
    """The JSON record, and the dataset copy with its marker when consented; the copy's row."""
    storage.put(feedback.key_of(record["id"]), json.dumps(record).encode())
    if not record["consent"]:
        return None
    name = feedback.save_to_dataset(storage, record)
    feedback.mark_copied(storage, record["id"], name)
    return {
        "name": name,
        "label": feedback.dataset_label(record),
        "source": record["source"],
        "created": record["created"],
        "prediction_id": record["id"],
    }


def store_drawing(storage, i: int) -> dict:
    label = str(i % 10)
    png = base64.b64decode(PNGS[i % len(PNGS)])
    name = dataset.save_drawing(storage, png, label, "collect")
    return {
        "name": name,
        "label": label,
        "source": "collect",
        "created": datetime.now(UTC).isoformat(),
    }


def fill_storage(storage, have: Filled, feedback_n: int, drawings_n: int) -> Batch:
    """Grow storage to these counts: feedback records (their consented drawings copied into the
    dataset), then drawings saved as /hook saves them up to `drawings_n`."""
    rng = random.Random(have.feedback)
    start = datetime.now(UTC) - timedelta(days=61)
    consent_share = min(0.8, 0.8 * drawings_n / feedback_n)
    new = [
        feedback_record(i, rng, rng.random() < consent_share, start)
        for i in range(have.feedback, feedback_n)
    ]
    with ThreadPoolExecutor(WRITERS) as pool:
        copies = [row for row in pool.map(lambda r: store_feedback(storage, r), new) if row]
        have.drawings += len(copies)
        extra = range(have.drawings, max(have.drawings, drawings_n))
        collected = list(pool.map(lambda i: store_drawing(storage, i), extra))
    have.drawings += len(collected)
    have.feedback = feedback_n
    return Batch(new, copies + collected)


def fill_database(engine, batch: Batch) -> None:
    """The batch's rows as `flask db rebuild` writes them, every learnable sample learned."""
    with db.writing(engine) as conn:
        rebuild.insert_all(conn, db.feedback, (records.feedback_row(r) for r in batch.feedback))
        records.retally(conn)
        rebuild.insert_all(conn, db.drawings, (records.drawing_row(m) for m in batch.drawings))
        records.recount(conn)
        learnable = [r["id"] for r in batch.feedback if r["consent"] and r["digit"] is not None]
        for net in NETS:
            records.mark(conn, net, learnable, "learned", "v1")
    analyze(engine)


def fill(storage, engine, have: Filled, feedback_n: int, drawings_n: int) -> float:
    """Grow storage and one database to these counts; return the seconds it took."""
    started = time.monotonic()
    fill_database(engine, fill_storage(storage, have, feedback_n, drawings_n))
    return time.monotonic() - started


def analyze(engine) -> None:
    """The planner's statistics and PostgreSQL's visibility map, as autovacuum keeps them on a
    live database: without them, right after a bulk fill, PostgreSQL sorted a whole table for a
    gallery page instead of reading an index.

    Twice: the first VACUUM right after a bulk insert left every page of the table not
    all-visible here (pg_class.relallvisible 0 of 718 at 50k drawings; the test server runs
    with synchronous_commit off, a likely reason), so each index-only scan read the table too;
    the second set them all (bench/gallery.py)."""
    for _ in range(2):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE" if db.is_sqlite(engine) else "VACUUM ANALYZE")


# --- measuring ---------------------------------------------------------------------------------


def get(
    port: int, path: str, conn: http.client.HTTPConnection | None = None, allowed=(200,)
) -> float:
    """Seconds for one GET, which must answer one of `allowed`."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    seconds = time.perf_counter() - started
    if own:
        conn.close()
    if response.status not in allowed:
        raise RuntimeError(f"GET {path}: {response.status}")
    return seconds


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its high-water mark (VmHWM); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass  # it has just exited
    return 0.0


def uncached_stats_p99(engine) -> float:
    times = []
    for _ in range(20):
        started = time.perf_counter()
        with db.reading(engine) as conn:
            records.accuracy_stats(conn)
        times.append(time.perf_counter() - started)
    return percentile(times, 99)


def predict_p99(port: int, seconds: float) -> float:
    from bench.burst import predict_times

    return percentile(predict_times(port, seconds), 99)


def hammered_predict_p99(port: int, args, pages: int) -> tuple[float, int]:
    """Predict p99 while bench/burst.py's hammer (a process of its own, `args.clients` keep-alive
    clients) asks for the stats, the gallery and the counts; and the hammer's errors. A read
    shed while busy (503 with Retry-After, digits/public.py) is no error."""
    from bench.burst import start_hammer

    hammering = start_hammer(port, args, pages)
    time.sleep(1.0)  # the clients are connected and asking
    p99 = predict_p99(port, args.seconds)
    statuses = json.loads(hammering.communicate(timeout=300)[0])
    errors = sum(n for status, n in statuses.items() if status not in ("200", "503"))
    return p99, errors


TRAINER_PASS = """
import sys, time
from main import create_app
from digits import learner, mnist
import numpy as np
images, labels = mnist.load_fixture()
x = mnist.normalise(images)
reference = learner.Reference(x[:100], labels[:100].astype(np.int64), x[100:], labels[100:])
app = create_app()
with app.app_context():
    started = time.perf_counter()
    if hasattr(learner, "pass_arguments"):  # with the database
        where = learner.pass_arguments(app)
    else:  # before it
        where = (app.extensions["storage"], app.config["MODELS_DIR"])
    outcomes = learner.learn_pending(*where, reference, learner.Settings())
    seconds = time.perf_counter() - started
assert {o.status for o in outcomes} == {"nothing to learn"}, outcomes
print(seconds)
"""


def trainer_pass(env: dict) -> float:
    done = subprocess.run(
        [sys.executable, "-c", TRAINER_PASS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"trainer pass failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def storage_scan(storage) -> float:
    """Before the database: list every feedback record and read each, READERS at a time."""
    started = time.monotonic()
    for _ in dataset.read_each(feedback.ids(storage), lambda i: feedback.load(storage, i)):
        pass
    return time.monotonic() - started


def measure(env: dict, args, engine, have: Filled, log: Path) -> dict:
    port = free_port()
    row: dict = {"feedback": have.feedback, "drawings": have.drawings}
    server = start_gunicorn(port, {**env, "PORT": str(port)}, log, [])
    try:
        row["first_stats"] = get(port, "/api/stats")
        row["stats_p99"] = uncached_stats_p99(engine)
        row["counts"] = get(port, "/api/dataset/counts")
        pages = max(1, have.drawings // 48)
        row["gallery"] = max(
            get(port, "/api/dataset?page=1"), get(port, f"/api/dataset?page={max(1, pages // 2)}")
        )
        for _ in range(6):  # every worker serves each kind of request at least once, likely
            get(port, "/api/stats"), get(port, "/api/dataset/counts"), get(port, "/api/dataset")
        row["rss"] = max(rss_mb(pid) for pid in worker_pids(server.pid))
        warm_up(port)
        row["predict_alone"] = predict_p99(port, args.seconds)
        row["predict_hammered"], row["hammer_errors"] = hammered_predict_p99(port, args, pages)
    finally:
        stop_gunicorn(server)
    row["trainer_pass"] = trainer_pass(env) if args.trainer else None
    return row


# --- the export --------------------------------------------------------------------------------

EXPORT_TOKEN = "bench-admin"
OLD_EXPORT = """
import io
from main import create_app
from digits import dataset
app = create_app()
print(dataset.write_zip(app.extensions["storage"], io.BytesIO()))
"""


def peak_rss_of(command: list[str], env: dict, while_running=lambda: None) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of a child process; `while_running` is called every half second
    meanwhile. The peak is the kernel's high-water mark of the child's own memory (VmHWM, which
    only grows), read every 0.1 s until it exits. Not wait4's ru_maxrss: at exec the kernel keeps
    the forking process's RSS as the child's maxrss, so it gave the bench's own size (446 MB
    while it holds the 100k fill) for any smaller child."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    peak, called = 0.0, started
    while child.poll() is None:
        peak = max(peak, rss_mb(child.pid, "VmHWM"))
        if time.perf_counter() - called >= 0.5:
            while_running()
            called = time.perf_counter()
        time.sleep(0.1)
    if child.returncode != 0:
        raise RuntimeError(f"{command[-2:]} exited with {child.returncode}")
    return peak, time.perf_counter() - started


def admin_call(port: int, method: str, path: str) -> tuple[dict, float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    started = time.perf_counter()
    conn.request(method, path, headers={"Authorization": f"Bearer {EXPORT_TOKEN}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    took = time.perf_counter() - started
    conn.close()
    if response.status not in (200, 202):
        raise RuntimeError(f"{method} {path}: {response.status} {body}")
    return body, took


def fetch_zip(port: int, link: str) -> tuple[int, float]:
    """(entries, seconds): the zip behind a done export's link, streamed to a temporary file."""
    started = time.perf_counter()
    if not link.startswith("http"):  # the app's download route (a local folder)
        link = f"http://{HOST}:{port}{link}"
    request = urllib.request.Request(link)
    if link.startswith(f"http://{HOST}:{port}/"):
        request.add_header("Authorization", f"Bearer {EXPORT_TOKEN}")
    with tempfile.TemporaryFile() as out:
        with urllib.request.urlopen(request, timeout=600) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        took = time.perf_counter() - started
        with zipfile.ZipFile(out) as archive:
            return len(archive.infolist()), took


def measure_export(env: dict, args, have: Filled, log: Path) -> dict:
    """An export of every drawing through the job API; and the zip in memory, as before jobs."""
    env = {**env, "ADMIN_TOKEN": EXPORT_TOKEN}
    port = free_port()
    server = start_gunicorn(port, {**env, "PORT": str(port)}, log, [])
    slowest = []
    try:
        job, took = admin_call(port, "POST", "/api/dataset/exports")
        slowest.append(took)

        def poll() -> None:
            slowest.append(admin_call(port, "GET", job["url"])[1])

        flask = [sys.executable, "-m", "flask", "--app", "main"]
        rss, seconds = peak_rss_of([*flask, "exports", "--once"], env, poll)
        done, took = admin_call(port, "GET", job["url"])
        slowest.append(took)
        entries, download = fetch_zip(port, done["download"])
    finally:
        stop_gunicorn(server)
    if done["state"] != "done" or entries != have.drawings + 1:  # the PNGs and labels.csv
        raise RuntimeError(f"export: {done['state']}, {entries} entries for {have.drawings}")
    row = {"export_rss": rss, "export_seconds": seconds, "export_slowest": max(slowest)}
    return row | {"export_download": download, "export_mb": done["bytes"] / 1e6}


def old_export_rss(env: dict) -> float:
    """The peak RSS of the zip built in memory, as in a request before exports were jobs."""
    return peak_rss_of([sys.executable, "-c", OLD_EXPORT], env)[0]


def export_cell(r: dict) -> str:
    if "export_rss" not in r:
        return "–"
    before = r["export_before_rss"]
    built = f"{r['export_rss']:.0f} MB RSS, {r['export_seconds']:.0f} s, {r['export_mb']:.1f} MB"
    return (
        f"build {built} zip; slowest request {ms(r['export_slowest'])};"
        f" download {r['export_download']:.1f} s;"
        f" before (zip in memory) {'–' if before is None else f'{before:.0f} MB'}"
    )


# --- the run -----------------------------------------------------------------------------------


class FilledMoto:
    """bench/moto_fill.py: moto's server over HTTP, filled from a folder through its side door."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        script = str(ROOT / "bench" / "moto_fill.py")
        self.process = subprocess.Popen(
            [sys.executable, script, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("moto did not start")
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=BUCKET)

    def load(self, folder: Path, prefix: str) -> int:
        """Copy the folder's new files into the bucket under `prefix`; how many there were."""
        self.process.stdin.write(f"{folder}\t{BUCKET}\t{prefix}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.kill()  # its data is thrown away: no need to wait for a clean stop
        self.process.wait()


@dataclass
class Database:
    kind: str
    engine: object
    env: dict


def open_database(kind: str, scratch: Path, storage_env: dict, postgres) -> Database:
    if kind == "postgresql":
        url = postgres.new_database()
    else:
        url = f"sqlite:///{scratch / 'digits.sqlite3'}"
    env = {
        **os.environ,
        **storage_env,
        "DATABASE_URL": url,
        "LOG_REQUESTS": "off",
        "RATE_LIMIT_SAVES": "off",
        "RATE_LIMIT_FEEDBACK": "off",
        "RATE_LIMIT_READS": "off",  # the hammer's clients share one address
        "MODEL_WATCH": "off",
    }
    engine = db.make_engine(url)
    db.upgrade(engine)
    return Database(kind, engine, env)


PREFIX = "volume"  # the bucket's prefix for the app's storage


def open_storage_for(args, scratch: Path, moto: FilledMoto | None) -> tuple[Path, dict, object]:
    """(the folder the fill writes into, the app's storage settings, the app's storage). On S3
    the folder is a staging area in memory (/dev/shm when there is one), copied into moto."""
    if moto is None:
        folder = scratch / "storage"
        return folder, {"STORAGE_URL": str(folder)}, LocalStorage(str(folder))
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="digits-volume-", dir=shm if shm.is_dir() else None))
    env = {"STORAGE_URL": f"s3://{BUCKET}/{PREFIX}", "AWS_ENDPOINT_URL": moto.endpoint}
    return folder, env, open_storage(env["STORAGE_URL"], moto.endpoint)


def grow(args, moto, folder: Path, have: Filled, size: int) -> Batch:
    """One step of the fill, into the folder (and from it into moto)."""
    started = time.monotonic()
    batch = fill_storage(LocalStorage(str(folder)), have, size, min(size, args.drawings))
    loaded = moto.load(folder, PREFIX + "/") if moto else 0
    print(
        f"storage: {have.feedback:,} feedback, {have.drawings:,} drawings"
        f" ({loaded:,} blobs into moto) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return batch


def nice_postgres(postgres) -> None:
    """PostgreSQL at the server's nice: in production it is a service on machines of its own,
    and here, left at 0, its backends took the 2 cores before gunicorn's (nice 5) predictions."""
    postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
    for pid in [postmaster, *worker_pids(postmaster)]:
        os.setpriority(os.PRIO_PROCESS, pid, SERVER_NICE)  # later backends inherit it


def run(args, moto: FilledMoto | None, scratch: Path) -> list[dict]:
    """Every size in turn: grow storage, then fill and measure each database on it."""
    from tests.helpers import PostgresServer

    folder, storage_env, storage = open_storage_for(args, scratch, moto)
    kinds = args.databases.split(",")
    postgres = PostgresServer() if "postgresql" in kinds else None
    if postgres:
        postgres.start()
        nice_postgres(postgres)
    databases, have, rows = [], Filled(), []
    try:
        databases = [open_database(k, scratch, storage_env, postgres) for k in kinds]
        for size in args.sizes:
            batch = grow(args, moto, folder, have, size)
            baseline = baselines(args, storage, databases[0].env, have)
            for database in databases:
                row = measure_database(args, database, batch, have, scratch)
                rows.append(row | baseline)
    finally:
        for database in databases:
            database.engine.dispose()
        if postgres:
            postgres.stop()
        if moto:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def baselines(args, storage, env: dict, have: Filled) -> dict:
    """Storage before the database (the same for every database): reading every feedback
    record, and the export's zip in memory; up to --baseline-max records and drawings."""
    baseline = {"baseline_scan": None, "export_before_rss": None}
    if have.feedback <= args.baseline_max:
        baseline["baseline_scan"] = storage_scan(storage)
    if args.export and have.drawings <= args.baseline_max:
        baseline["export_before_rss"] = old_export_rss(env)
    return baseline


def measure_database(args, database: Database, batch, have, scratch: Path) -> dict:
    started = time.monotonic()
    fill_database(database.engine, batch)
    print(f"{database.kind}: rows in {time.monotonic() - started:.0f} s", flush=True)
    log = scratch / f"{database.kind}-{have.feedback}.log"
    row = {"database": database.kind}
    row |= measure(database.env, args, database.engine, have, log)
    if args.export:
        row |= measure_export(database.env, args, have, log.with_suffix(".export.log"))
    print(json.dumps(row), flush=True)
    return row


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.0f} ms"


COLUMNS = (
    ("database", lambda r: r["database"]),
    ("feedback / drawings", lambda r: f"{r['feedback']:,} / {r['drawings']:,}"),
    ("first /api/stats", lambda r: ms(r["first_stats"])),
    ("stats uncached p99", lambda r: ms(r["stats_p99"])),
    ("worker RSS", lambda r: f"{r['rss']:.0f} MB"),
    ("gallery page, cold", lambda r: ms(r["gallery"])),
    ("counts", lambda r: ms(r["counts"])),
    ("trainer pass, nothing new", lambda r: ms(r["trainer_pass"])),
    ("predict p99 alone", lambda r: ms(r["predict_alone"])),
    ("predict p99 while clients hammer stats+gallery", lambda r: ms(r["predict_hammered"])),
    ("errors under load", lambda r: str(r["hammer_errors"])),
    ("baseline: read every feedback record", lambda r: ms(r["baseline_scan"])),
    ("export of every drawing (a job)", export_cell),
)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row) for _, cell in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="2000,20000,100000", type=lambda text: [int(s) for s in text.split(",")]
    )
    parser.add_argument("--drawings", type=int, default=50_000, help="drawings at most")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--storage", choices=("s3", "local"), default="s3")
    parser.add_argument("--seconds", type=float, default=10.0, help="per predict measurement")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--baseline-max", type=int, default=20_000)
    parser.add_argument(
        "--no-trainer", dest="trainer", action="store_false", help="skip the trainer pass"
    )
    parser.add_argument("--no-export", dest="export", action="store_false", help="skip the export")
    args = parser.parse_args()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    moto = FilledMoto() if args.storage == "s3" else None
    try:
        with tempfile.TemporaryDirectory(prefix="digits-volume-") as scratch:
            rows = run(args, moto, Path(scratch))
    finally:
        if moto:
            moto.stop()
    out = table(rows)
    print(out)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    header = f"Volume bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, blobs on {args.storage}\n\n"
    (ROOT / "bench" / "out" / "volume.md").write_text(header + out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
