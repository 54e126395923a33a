"""Load benchmark: gunicorn as in production, 32 keep-alive clients, then an exact save audit.

    .venv/bin/python bench/load.py              # each backend: closed loop, then 625 req/s
    .venv/bin/python bench/load.py --quick      # 5 s per run, for a short check
    .venv/bin/python bench/load.py --backend local --duration 30
    .venv/bin/python bench/load.py --idle 0,48   # each run without, then with 48 idle connections

Per backend: start gunicorn with gunicorn.conf.py (2 gthread workers, as Heroku's standard-1x)
on 127.0.0.1, rate limits off through the environment, warm the workers, then run the clients
for the duration: 80% POST /api/predict, 10% POST /hook, 10% POST /api/feedback on ids from
earlier predicts. Afterwards gunicorn is stopped and storage is read back: every save answered
201 must be there, and nothing else. The S3 run starts its own moto_server on a free port.

`--idle N` (or a list, `0,48`: each run once per count, the first as the baseline) first opens N
more connections, makes one request on each and leaves them idle for
the whole run, as Heroku's router leaves its connections to a dyno (for up to 90 s). After the
run each is used once more: the table says how many the server kept open and how many then
answered, and the load columns show whether the idle ones held back the clients.

The client is one asyncio loop over raw sockets with every request body pre-encoded, so it
costs little of the 2 cores it shares with the server. Gunicorn runs under `nice` (SERVER_NICE):
the client's CPU still comes out of the same two cores, but the scheduler runs it first when it
has something to do, so its clock readings and sends are not held up behind busy server threads
(without it, the same server measured about 8% fewer requests/s and a wider spread). A reply
that closes the connection makes the client connect again, and that connect is timed as part
of its next request. Results: a markdown table on stdout and in bench/out/load.md.

Every run's scratch folder is deleted only after the last run. This machine's ext4 has no
journal, and then the kernel will not reuse an inode freed in the last minute (six, while its
block is unwritten): each new file's inode search steps over every such inode, one buffer
lookup each. Deleting a run's 40,000 files right before the next run made that run's file
creations cost about 0.4 ms of CPU each (perf: 5-7% of both cores in `find_inode_bit`), a
cost of the bench, not of the app, which never deletes files on this path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits import dataset  # noqa: E402
from digits.storage import open_storage  # noqa: E402
from tests.helpers import data_url, drawing_png, worker_pids  # noqa: E402

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
MIX = (("predict", 8), ("save", 1), ("feedback", 1))  # out of 10
EXPECTED = {"predict": 200, "save": 201, "feedback": 202}
TARGET_RATE = 500  # predictions per second
TARGET_P99_MS = 50.0
SERVER_NICE = 5  # the server yields the cores to the measuring client (a tenth of a core)
FEEDBACK_DELAY = 1.0  # seconds between a prediction and its feedback, as a person answers
BUCKET = "digits-bench"
ID_PATTERN = re.compile(rb'"id":\s*"(p[0-9T]+(?:-[0-9a-f]+)+)"')
NAME_PATTERN = re.compile(rb'"name":\s*"([^"]+)"')
# Drawings of different shapes, so the nets do some real work, and labels to save them under.
STROKES = [
    (((60, 40), (140, 40), (90, 170)),),
    (((100, 30), (100, 170)),),
    (((60, 60), (100, 30), (140, 60), (60, 170), (140, 170)),),
    (((70, 40), (130, 40), (100, 100), (140, 140), (100, 170), (60, 150)),),
]


def page_png(lines) -> bytes:
    """A drawing as the page sends it: RGBA, black strokes on an opaque white ground."""
    return drawing_png(lines, mode="RGBA", ground="white")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def request_bytes(port: int, path: str, payload: dict) -> bytes:
    """A complete HTTP/1.1 request, encoded once and reused."""
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    saved_names: set[str] = field(default_factory=set)
    # Prediction latencies by the second of the run they were answered in: shows whether a
    # missed p99 came from a few slow seconds or from the whole run.
    predict_by_second: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of gunicorn (and moto) during the run
    moto_cpu: float = 0.0  # of which moto's: a real S3 would not spend our cores
    client_cpu: float = 0.0
    stolen: float = 0.0  # share of the machine's CPU time the hypervisor gave to others
    memory_probe: tuple[float, float] = (0.0, 0.0)  # memory_probe_ms() before and after


class Clients:
    """`count` keep-alive connections until the end of the run.

    Closed loop (`rate` None): each sends its next request as soon as the last is answered,
    which finds the most the server can do; latency is then about clients / throughput.
    Open loop (`rate` requests/s in all): requests leave on a fixed schedule, and latency is
    counted from the scheduled time, so a slow answer also delays the ones queued behind it.
    """

    def __init__(
        self, port: int, count: int, seconds: float, rate: float | None = None, seed: int = 1
    ) -> None:
        self.port = port
        self.count = count
        self.seconds = seconds
        self.rate = rate
        self.random = random.Random(seed)
        urls = [data_url(page_png(lines)) for lines in STROKES]
        self.predicts = [request_bytes(port, "/api/predict", {"imageBase64": u}) for u in urls]
        self.saves = [
            request_bytes(port, "/hook", {"imageBase64": u, "digit": str(d)})
            for d, u in enumerate(urls)
        ]
        # (when answered, id) of predictions nobody has given feedback on yet.
        self.ids: deque[tuple[float, bytes]] = deque(maxlen=5000)
        self.kinds = [kind for kind, weight in MIX for _ in range(weight)]
        self.results = Results()

    def feedback_request(self) -> bytes | None:
        # A person answers a second or more after seeing the prediction, never sooner.
        if not self.ids or time.perf_counter() - self.ids[0][0] < FEEDBACK_DELAY:
            return None
        prediction_id = self.ids.popleft()[1].decode()
        digit = self.random.randrange(10)
        payload = {"id": prediction_id, "digit": digit, "consent": False}
        return request_bytes(self.port, "/api/feedback", payload)

    def pick(self) -> tuple[str, bytes]:
        kind = self.random.choice(self.kinds)
        if kind == "feedback":
            request = self.feedback_request()
            if request is not None:
                return kind, request
            kind = "predict"
        pool = self.predicts if kind == "predict" else self.saves
        return kind, self.random.choice(pool)

    async def run(self) -> Results:
        started = self.started = time.perf_counter()
        self.deadline = started + self.seconds
        await asyncio.gather(*(self.one_client(i, started) for i in range(self.count)))
        self.results.seconds = time.perf_counter() - started
        return self.results

    async def one_client(self, index: int, begin: float) -> None:
        # (reader, writer), or None: then the next request connects, inside its own timing.
        connection = None
        interval = self.count / self.rate if self.rate else 0.0
        scheduled = begin + index / self.rate if self.rate else 0.0  # staggered starts
        while time.perf_counter() < self.deadline:
            kind, request = self.pick()
            if self.rate:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                started, scheduled = scheduled, scheduled + interval
            else:
                started = time.perf_counter()
            try:
                connection = connection or await asyncio.open_connection(HOST, self.port)
                connection[1].write(request)
                status, body, closing = await read_response(connection[0])
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                self.results.errors[f"{kind}: {type(e).__name__}"] += 1
                connection = close(connection)
                continue
            self.record(kind, status, body, time.perf_counter() - started)
            if closing:
                connection = close(connection)
        close(connection)

    def record(self, kind: str, status: int, body: bytes, seconds: float) -> None:
        self.results.latencies[kind].append(seconds * 1000)
        if kind == "predict":
            second = int(time.perf_counter() - self.started)
            self.results.predict_by_second[second].append(seconds * 1000)
        self.results.statuses[kind][status] += 1
        if status != EXPECTED[kind]:
            self.results.errors[f"{kind}: HTTP {status} {body[:80]!r}"] += 1
        elif kind == "predict":
            match = ID_PATTERN.search(body)
            if match:
                self.ids.append((time.perf_counter(), match.group(1)))
        elif kind == "save":
            match = NAME_PATTERN.search(body)
            if match:
                self.results.saved_names.add(match.group(1).decode())


def close(connection: tuple | None) -> None:
    """Close it if open; returns None, the value a client holds when it has no connection."""
    if connection:
        connection[1].close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if not match:
        raise ConnectionError("response without Content-Length")
    body = await reader.readexactly(int(match.group(1)))
    return status, body, b"\r\nconnection: close" in lower


class IdleConnections:
    """Connections that made one request and then wait, as the router's pooled ones do."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.open: list[tuple] = []  # (reader, writer) the server said it keeps alive
        self.answered_after = 0  # of those, how many answered a request after the run
        self.idle_seconds = 0.0

    def request(self) -> bytes:
        return f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()

    async def exchange(self, connection: tuple) -> tuple[int, bool]:
        connection[1].write(self.request())
        status, _body, closing = await read_response(connection[0])
        return status, closing

    async def start(self) -> None:
        """Open them all, one request each; keep those the server did not close."""
        for _ in range(self.count):
            connection = await asyncio.open_connection(HOST, self.port)
            status, closing = await self.exchange(connection)
            if status == 200 and not closing:
                self.open.append(connection)
            else:
                close(connection)
        self.started = time.perf_counter()

    async def reuse(self) -> None:
        """Send one more request on each kept connection, as the router would reuse it."""
        self.idle_seconds = time.perf_counter() - self.started if self.count else 0.0
        for connection in self.open:
            try:
                status, _closing = await asyncio.wait_for(self.exchange(connection), 10)
                self.answered_after += status == 200
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            close(connection)


async def run_with_idle(clients: Clients, idle: IdleConnections) -> Results:
    await idle.start()
    results = await clients.run()
    await idle.reuse()
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- servers ---------------------------------------------------------------------------


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        moto = shutil.which("moto_server", path=str(BIN)) or "moto_server"
        self.process = subprocess.Popen(
            [moto, "-H", HOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_http(f"{self.endpoint}/moto-api/", timeout=20)
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=BUCKET)

    def cpu_seconds(self) -> float:
        return cpu_seconds([self.process.pid])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_gunicorn(port: int, env: dict, log_path: Path, extra: list[str]) -> subprocess.Popen:
    # --bind on the command line overrides gunicorn.conf.py's 0.0.0.0: the bench stays local.
    command = ["nice", "-n", str(SERVER_NICE), str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"]
    command += ["--bind", f"{HOST}:{port}"]
    command += extra  # experiments only, e.g. --worker-connections 16; reported in the table
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [*command, "main:create_app()"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    wait_for_http(f"http://{HOST}:{port}/healthz")
    return process


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # graceful: workers finish what they are doing
    process.wait(timeout=60)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, and of their children that exited
    (Linux /proc): gunicorn replaces a worker after max_requests, and the master reaps it."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> list[int]:
    """The machine's CPU time so far, by kind (Linux /proc/stat: user, nice, ..., steal)."""
    return [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def stolen_share(before: list[int], after: list[int]) -> float:
    """Steal time: the virtual CPUs were ready to run but the host ran someone else."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return spent[7] / max(1, sum(spent))


def memory_probe_ms() -> float:
    """Milliseconds for 1M random reads over 32 MB: about 13 on this machine when calm.

    Its neighbours share the memory: on slow afternoons this took 20-38 ms, and the server's CPU
    per request rose with it, while a pure-Python loop kept its speed.
    """
    table = np.ones(8 << 20, np.float32)
    where = np.random.default_rng(0).integers(0, len(table), 1 << 20)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        table[where].sum()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[1]


def server_pids(master: subprocess.Popen, moto: Moto | None) -> list[int]:
    """The master, its workers as of now (listed again at each reading), and moto."""
    pids = [master.pid, *worker_pids(master.pid)]
    return pids + ([moto.process.pid] if moto else [])


def warm_up(port: int) -> None:
    """Each worker's first predictions set up buffers: make some before the clock starts."""
    body = json.dumps({"imageBase64": data_url(page_png(STROKES[0]))}).encode()
    for _ in range(40):
        request = urllib.request.Request(
            f"http://{HOST}:{port}/api/predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def models_dir(scratch: Path) -> tuple[str, str]:
    """The shipped nets in models/, or (until they are trained) the tiny test nets."""
    shipped = ROOT / "models"
    if (shipped / "fnn.tflite").exists() and (shipped / "cnn.tflite").exists():
        return str(shipped), "models/ (the shipped nets)"
    tiny = scratch / "models"
    tiny.mkdir()
    for net in ("fnn", "cnn"):
        shutil.copy(ROOT / "tests" / "fixtures" / f"tiny-{net}-a.tflite", tiny / f"{net}.tflite")
    return str(tiny), "TINY test nets (models/ is empty): predictions cost less than real ones"


def run_backend(
    backend: str, rate: float | None, idle_count: int, args: argparse.Namespace, out_dir: Path
) -> dict:
    """One run. Its scratch folder (storage, models) is left for `main` to delete at the end."""
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=args.scratch))
    models, models_note = models_dir(scratch)
    env = {
        **os.environ,
        "MODELS_DIR": models,
        "RATE_LIMIT_SAVES": "off",
        "RATE_LIMIT_FEEDBACK": "off",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("ADMIN_TOKEN", None)
    # The records in the path: the embedded SQLite database of this run, unless DATABASE_URL
    # names another (a PostgreSQL server, say).
    env.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'digits.sqlite3'}")
    env.pop("WEB_CONCURRENCY", None)  # gunicorn.conf.py's own default, unless --workers
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    moto = None
    try:
        if backend == "s3":
            os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
            os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
            moto = Moto()
            env["STORAGE_URL"] = f"s3://{BUCKET}/bench"
            env["AWS_ENDPOINT_URL"] = moto.endpoint
        else:
            env["STORAGE_URL"] = str(scratch / "storage")
            env.pop("AWS_ENDPOINT_URL", None)
        extra = args.gunicorn.split()
        server = start_gunicorn(port, env, out_dir / f"load-{backend}.log", extra)
        try:
            warm_up(port)
            load_before = os.getloadavg()[0]
            probe_before = memory_probe_ms()
            server_cpu = cpu_seconds(server_pids(server, moto))
            moto_cpu = moto.cpu_seconds() if moto else 0.0
            client_cpu = time.process_time()
            machine = machine_ticks()
            clients = Clients(port, args.clients, args.duration, rate)
            idle = IdleConnections(port, idle_count)
            results = asyncio.run(run_with_idle(clients, idle))
            results.server_cpu = cpu_seconds(server_pids(server, moto)) - server_cpu
            results.moto_cpu = moto.cpu_seconds() - moto_cpu if moto else 0.0
            results.client_cpu = time.process_time() - client_cpu
            results.stolen = stolen_share(machine, machine_ticks())
            results.memory_probe = (probe_before, memory_probe_ms())
        finally:
            stop_gunicorn(server)
        storage = open_storage(env["STORAGE_URL"], env.get("AWS_ENDPOINT_URL"))
        stored = set(dataset.names(storage))
        row = summarise(backend, args, results, stored, load_before)
        row |= {
            "idle": idle.count,
            "idle_kept": len(idle.open),
            "idle_answered": idle.answered_after,
        }
        row |= {"idle_seconds": idle.idle_seconds}
        return {**row, "rate": f"{rate:.0f}/s" if rate else "max", "models": models_note}
    finally:
        if moto:
            moto.stop()


def summarise(
    backend: str, args: argparse.Namespace, results: Results, stored: set[str], load: float
) -> dict:
    lat = results.latencies
    every = [x for values in lat.values() for x in values]
    acked = results.statuses["save"].get(201, 0)
    predictions = results.statuses["predict"].get(200, 0)
    return {
        "backend": backend,
        "seconds": results.seconds,
        "clients": args.clients,
        "requests": len(every),
        "predict_rate": predictions / results.seconds,
        "predict_p50": percentile(lat["predict"], 50),
        "predict_p99": percentile(lat["predict"], 99),
        "all_p99": percentile(every, 99),
        "save_p99": percentile(lat["save"], 99),
        "feedback_p99": percentile(lat["feedback"], 99),
        "feedbacks": results.statuses["feedback"].get(202, 0),
        "slow_seconds": slow_seconds(results.predict_by_second),
        "whole_seconds": len(results.predict_by_second),
        "errors": sum(results.errors.values()),
        "error_kinds": dict(results.errors),
        "acked": acked,
        "stored": len(stored),
        "audit_ok": acked == len(stored) and results.saved_names == stored,
        "load": load,
        "stolen": results.stolen,
        "memory_probe": results.memory_probe,
        "server_cpu_ms": results.server_cpu * 1000 / max(1, len(every)),
        "client_cpu_ms": results.client_cpu * 1000 / max(1, len(every)),
        "moto_cpu_ms": results.moto_cpu * 1000 / max(1, len(every)) if backend == "s3" else None,
        # An estimate: what idle cores could serve at this CPU cost per request, client included.
        "capacity": (os.cpu_count() or 1)
        * predictions
        / max(1e-9, results.server_cpu + results.client_cpu),
    }


def slow_seconds(by_second: dict[int, list[float]]) -> int:
    """How many seconds of the run had a prediction p99 over the target."""
    return sum(percentile(values, 99) > TARGET_P99_MS for values in by_second.values())


COLUMNS = [  # (heading, how to show a row's value)
    ("backend", lambda r: r["backend"]),
    ("offered", lambda r: r["rate"]),
    ("s", lambda r: f"{r['seconds']:.0f}"),
    ("clients", lambda r: str(r["clients"])),
    (
        "idle connections: kept / answered after (idle s)",
        lambda r: f"{r['idle']}: {r['idle_kept']} / {r['idle_answered']} ({r['idle_seconds']:.0f})",
    ),
    ("requests", lambda r: str(r["requests"])),
    ("predictions/s", lambda r: f"{r['predict_rate']:.0f}"),
    ("predict p50 ms", lambda r: f"{r['predict_p50']:.1f}"),
    ("predict p99 ms", lambda r: f"{r['predict_p99']:.1f}"),
    ("all p99 ms", lambda r: f"{r['all_p99']:.1f}"),
    (
        f"seconds with predict p99 > {TARGET_P99_MS:.0f} ms",
        lambda r: f"{r['slow_seconds']} of {r['whole_seconds']}",
    ),
    ("save p99 ms", lambda r: f"{r['save_p99']:.1f}"),
    ("feedback p99 ms", lambda r: f"{r['feedback_p99']:.1f}"),
    ("errors", lambda r: str(r["errors"])),
    ("saves 201", lambda r: str(r["acked"])),
    ("drawings stored", lambda r: str(r["stored"])),
    ("audit", lambda r: "exact" if r["audit_ok"] else "MISMATCH"),
    ("load avg before", lambda r: f"{r['load']:.1f}"),
    ("CPU stolen by the host", lambda r: f"{r['stolen']:.0%}"),
    (
        "memory probe ms before / after (calm: 13)",
        lambda r: "{:.0f} / {:.0f}".format(*r["memory_probe"]),
    ),
    ("server CPU ms/req", lambda r: f"{r['server_cpu_ms']:.2f}"),
    (
        "of it, moto's",
        lambda r: "–" if r["moto_cpu_ms"] is None else f"{r['moto_cpu_ms']:.2f}",
    ),
    ("client CPU ms/req", lambda r: f"{r['client_cpu_ms']:.2f}"),
    ("predictions/s this CPU cost allows on idle cores", lambda r: f"{r['capacity']:.0f}"),
]


def table(rows: list[dict]) -> str:
    lines = [
        "| " + " | ".join(heading for heading, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(show(row) for _, show in COLUMNS) + " |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        checks = {
            f"≥ {TARGET_RATE} predictions/s": r["predict_rate"] >= TARGET_RATE,
            f"predict p99 ≤ {TARGET_P99_MS:.0f} ms": r["predict_p99"] <= TARGET_P99_MS,
            f"all requests p99 ≤ {TARGET_P99_MS:.0f} ms": r["all_p99"] <= TARGET_P99_MS,
            "0 errors": r["errors"] == 0,
            "every idle connection kept open answers after": r["idle_answered"] == r["idle_kept"],
            "feedback in the mix": r["feedbacks"] > 0,
            "every 201 stored, nothing else": r["audit_ok"],
        }
        passed = ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
        out.append(f"- {r['backend']}, offered {r['rate']}: {passed}")
        for kind, count in sorted(r["error_kinds"].items()):
            out.append(f"  - {count} × {kind}")
    return out


def parse_rates(text: str) -> list[float | None]:
    return [None if r.strip() == "max" else float(r) for r in text.split(",")]


def all_runs(backends: list[str], args: argparse.Namespace) -> list[dict]:
    rows = []
    for backend in backends:
        for rate in parse_rates(args.s3_rates if backend == "s3" else args.rates):
            for idle in args.idle:
                offered = f"{rate:.0f} requests/s" if rate else "as fast as answered"
                print(
                    f"{backend}: {args.clients} clients, {offered}, {idle} idle connections, "
                    f"{args.duration:.0f} s",
                    flush=True,
                )
                rows.append(run_backend(backend, rate, idle, args, args.out))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, help="default: gunicorn.conf.py's (2)")
    parser.add_argument(
        "--idle",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0],
        help="idle keep-alive connections held open during each run; a list runs each count",
    )
    parser.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    parser.add_argument(
        "--rates",
        default=f"max,{TARGET_RATE * 10 // 8}",
        help="comma-separated: 'max' (closed loop) or total requests/s (open loop); "
        f"the default {TARGET_RATE * 10 // 8}/s carries {TARGET_RATE} predictions/s",
    )
    parser.add_argument(
        "--s3-rates",
        default=f"max,{TARGET_RATE * 10 // 8}",
        help="the same for S3; moto shares the two cores, so on a slow machine the server "
        "cannot keep up with 625/s and the open loop then measures a growing queue",
    )
    parser.add_argument("--quick", action="store_true", help="5 s per run")
    parser.add_argument(
        "--gunicorn", default="", help="extra gunicorn options on top of gunicorn.conf.py"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    if args.quick:
        args.duration = 5.0
    args.out.mkdir(parents=True, exist_ok=True)
    backends = ["local", "s3"] if args.backend == "both" else [args.backend]
    sys.stdout.reconfigure(line_buffering=True)
    # Each run's files are deleted only after the last run (see the docstring).
    args.scratch = tempfile.mkdtemp(prefix="digits-bench-")
    try:
        rows = all_runs(backends, args)
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)
    report = "\n".join(
        [
            "# Load benchmark",
            "",
            f"gunicorn (gunicorn.conf.py{f', {args.workers} workers' if args.workers else ''}"
            f"{', plus ' + args.gunicorn if args.gunicorn else ''}) on {HOST}, "
            f"idle keep-alive connections held open through each run: {args.idle}, "
            f"{os.cpu_count()} cores shared with the client (and moto for S3); "
            "mix 80% predict / 10% save / 10% feedback; keep-alive connections. "
            "Offered 'max' is a closed loop (each client sends when answered: the most the "
            "server can do, latency ≈ clients / throughput); a number is an open loop at that "
            "many requests/s, latency counted from each request's scheduled time.",
            "",
            table(rows),
            "",
            *verdicts(rows),
            "",
            f"Models: {rows[0]['models']}.",
            "",
        ]
    )
    print(report)
    (args.out / "load.md").write_text(report)
    ok = all(
        r["errors"] == 0
        and r["audit_ok"]
        and r["feedbacks"] > 0
        and r["idle_answered"] == r["idle_kept"]
        for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
