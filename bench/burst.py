"""Burst bench: /api/predict's latency alone, and while clients hammer the public reads.

    .venv/bin/python bench/burst.py                       # 20k feedback and drawings, 2 rounds
    .venv/bin/python bench/burst.py --size 2000 --seconds 5 --rounds 1    # a quick look
    .venv/bin/python bench/burst.py --baseline 18b55b8    # the code to compare with

Storage (a local folder) and an SQLite database are filled once, through bench/volume.py's
`fill` (the project's own code). Then each variant's gunicorn starts as in production
(gunicorn.conf.py: 2 workers of 4 threads) on that same data, and one client measures
POST /api/predict for --seconds alone, then again while --clients keep-alive clients (in
another process, so that their threads do not slow the measuring client's) ask without pause
for the pages and the API's public reads: /stats, /api/stats, /dataset, a random gallery page
of /api/dataset and /api/dataset/counts.

The variants, alternated round by round so that each sees the machine as the others do:
- `before`: the code of --baseline (git archive into a scratch folder), the same bench;
- `now`: this tree, as deployed (PUBLIC_READS=2);
- `now-no-bound`: this tree with PUBLIC_READS=0 (only the cheaper answers);
- `now-switch-5ms`: this tree with Python's default switch interval (GIL_SWITCH_MS=5);
- `now-reads-1`: this tree with PUBLIC_READS=1 (not run unless --variants names it).
RATE_LIMIT_READS is off in every variant: the clients share one address, which a per-IP
limit would stop at once, so this measures the bound itself, as many addresses would meet it.

The table: predict p50/p99 alone and hammered, the reads answered per second by status, and
errors (no answer, or a status other than 200, 304 and 503). Printed, and in bench/out/burst.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    BIN,
    HOST,
    SERVER_NICE,
    STROKES,
    page_png,
    percentile,
    wait_for_http,
    warm_up,
)
from tests.helpers import data_url, free_port  # noqa: E402

PER_PAGE = 48


def read_paths(rng: random.Random, pages: int) -> str:
    """One of the public reads a visitor of the stats or the gallery makes."""
    return rng.choice(
        [
            "/stats",
            "/api/stats",
            "/dataset",
            f"/api/dataset?page={rng.randint(1, pages)}",
            "/api/dataset/counts",
        ]
    )


# --- the hammer: its own process --------------------------------------------------------------


def hammer(port: int, clients: int, seconds: float, pages: int) -> dict:
    """`clients` threads asking without pause for `seconds`; statuses counted ("error": none)."""
    counts: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        rng, mine = random.Random(index), Counter()
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while time.monotonic() < deadline:
            try:
                conn.request("GET", read_paths(rng, pages))
                response = conn.getresponse()
                response.read()
                mine[response.status] += 1
            except (OSError, http.client.HTTPException):
                mine["error"] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {str(k): v for k, v in counts.items()}


def start_hammer(port: int, args, pages: int) -> subprocess.Popen:
    command = ["nice", "-n", str(SERVER_NICE), sys.executable, __file__, "--hammer-only"]
    command += [str(port), str(args.clients), str(args.seconds + 1.0), str(pages)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


# --- measuring --------------------------------------------------------------------------------


def predict_times(port: int, seconds: float) -> list[float]:
    body = json.dumps({"imageBase64": data_url(page_png(STROKES[1]))})
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        conn.request("POST", "/api/predict", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"predict: {response.status}")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def start_server(tree: Path, port: int, env: dict, log: Path) -> subprocess.Popen:
    command = ["nice", "-n", str(SERVER_NICE), str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"]
    command += ["--bind", f"{HOST}:{port}", "main:create_app()"]
    with open(log, "ab") as out:
        server = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=out)
    wait_for_http(f"http://{HOST}:{port}/healthz")
    return server


def measure(name: str, tree: Path, env: dict, args, pages: int, log: Path) -> dict:
    port = free_port()
    server = start_server(tree, port, {**env, "PORT": str(port)}, log)
    try:
        warm_up(port)
        alone = predict_times(port, args.seconds)
        hammering = start_hammer(port, args, pages)
        time.sleep(0.5)  # the clients are connected and asking
        hammered = predict_times(port, args.seconds)
        statuses = json.loads(hammering.communicate(timeout=120)[0])
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"variant": name, "alone": alone, "hammered": hammered, "statuses": statuses}


# --- the run ----------------------------------------------------------------------------------


def baseline_tree(commit: str, scratch: Path) -> Path:
    tree = scratch / f"tree-{commit}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def schema_of_baseline(scratch: Path, commit: str) -> str:
    """A copy of the database, migrated down to the newest revision the baseline knows (the
    migrations' files are named by their revision)."""
    from alembic import command

    from digits import db

    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, "digits/migrations/versions/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    newest = max(Path(name).name.split("_")[0] for name in listed if name.endswith(".py"))
    copy = scratch / "baseline.sqlite3"
    copy.write_bytes((scratch / "digits.sqlite3").read_bytes())
    engine = db.make_engine(f"sqlite:///{copy}")
    command.downgrade(db.alembic_config(engine), newest)
    engine.dispose()
    return f"sqlite:///{copy}"


def filled(scratch: Path, size: int) -> tuple[dict, int]:
    """The environment of a server on storage and a database filled to `size`; gallery pages."""
    from bench.volume import Filled, fill
    from digits import db
    from digits.storage import LocalStorage

    url = f"sqlite:///{scratch / 'digits.sqlite3'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    storage = LocalStorage(str(scratch / "storage"))
    have = Filled()
    took = fill(storage, engine, have, size, size)
    engine.dispose()
    print(f"filled {have.feedback} feedback, {have.drawings} drawings in {took:.0f} s", flush=True)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "STORAGE_URL": str(scratch / "storage"),
        "LOG_REQUESTS": "off",
        "MODEL_WATCH": "off",
        "RATE_LIMIT_READS": "off",
    }
    return env, max(1, have.drawings // PER_PAGE)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def row(result: dict, seconds: float) -> str:
    alone, hammered, statuses = result["alone"], result["hammered"], result["statuses"]
    served = sum(v for k, v in statuses.items() if k in ("200", "304"))
    errors = sum(v for k, v in statuses.items() if k not in ("200", "304", "503"))
    cells = [
        result["variant"],
        f"{ms(percentile(alone, 50))} / {ms(percentile(alone, 99))}",
        f"{ms(percentile(hammered, 50))} / {ms(percentile(hammered, 99))}",
        f"{len(hammered) / seconds:.0f}",
        f"{served / (seconds + 1):.0f}",
        f"{statuses.get('503', 0) / (seconds + 1):.0f}",
        str(errors),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| code | predict p50 / p99 ms, alone | predict p50 / p99 ms, hammered "
    "| predictions/s, hammered | reads served/s (200, 304) | reads shed/s (503) | errors |\n"
    "|---|---|---|---:|---:|---:|---:|"
)


def run(args) -> str:
    with tempfile.TemporaryDirectory(prefix="digits-burst-") as scratch_name:
        scratch = Path(scratch_name)
        env, pages = filled(scratch, args.size)
        before = {**env, "DATABASE_URL": schema_of_baseline(scratch, args.baseline)}
        variants = [
            ("before", baseline_tree(args.baseline, scratch), before),
            ("now", ROOT, env),
            ("now-no-bound", ROOT, {**env, "PUBLIC_READS": "0"}),
            ("now-switch-5ms", ROOT, {**env, "GIL_SWITCH_MS": "5"}),
            ("now-reads-1", ROOT, {**env, "PUBLIC_READS": "1"}),
        ]
        variants = [v for v in variants if v[0] in args.variants]
        lines = []
        for round_number in range(args.rounds):
            for name, tree, variant_env in variants:
                log = scratch / "gunicorn.log"
                result = measure(name, tree, variant_env, args, pages, log)
                lines.append(row(result, args.seconds))
                print(f"round {round_number + 1}: {lines[-1]}", flush=True)
    return HEADER + "\n" + "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--hammer-only":
        port, clients, seconds, pages = sys.argv[2:6]
        print(json.dumps(hammer(int(port), int(clients), float(seconds), int(pages))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="feedback records and drawings")
    parser.add_argument("--seconds", type=float, default=10.0, help="per predict measurement")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default="18b55b8", help="the commit to compare with")
    parser.add_argument(
        "--variants",
        default="before,now,now-no-bound,now-switch-5ms",
        type=lambda text: text.split(","),
        help="which variants to run, comma-separated",
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    table = run(args)
    load = os.getloadavg()
    title = (
        f"Burst bench, {started:%Y-%m-%d %H:%M} UTC: {args.size:,} feedback and drawings "
        f"(SQLite, local folder), {args.clients} clients, {args.seconds:.0f} s each; "
        f"load average after: {load[0]:.1f}"
    )
    print(title + "\n\n" + table)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "burst.md").write_text(title + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
