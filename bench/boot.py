"""Boot time of the Heroku slug: from the start of the slug to `/healthz` answering.

    .venv/bin/python scripts/slug_size.py     # builds the slug: /tmp/digits-slug/slug.tar.gz
    .venv/bin/python bench/boot.py            # unpacks it, boots it, prints a table

A dyno fetches the slug, unpacks it into /app and runs the Procfile's command. Here:
1. unpack: `tar -xzf slug.tar.gz` into an empty folder, timed (the download is not measured);
2. boot: the Procfile's web command, run by the slug's own Python with what the buildpack gives
   a dyno (its Python first on PATH, PORT, WEB_CONCURRENCY=2, GUNICORN_CMD_ARGS,
   FORWARDED_ALLOW_IPS), timed from the process's start until GET /healthz answers 200;
   storage is a local folder (on Heroku /healthz also asks S3, one round trip);
3. baseline, in the same run: the same command from this checkout's .venv.
Boots alternate between the two, `--runs` each; the first boot of each also writes the bytecode
of the app's own code (as a dyno's first boot does; the buildpack compiles only the packages'
and the stdlib's). Both read files the page cache holds (the slug's
were just written), as a dyno does right after unpacking. `--worker` also times the slug's
worker once, from its start until it prints its first line: TensorFlow's import and, as on every
dyno's first start, the MNIST reference it builds from the slug's files (data/learner).
Results: a markdown table on stdout and in bench/out/boot.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILDPACK_ENV = {
    "WEB_CONCURRENCY": "2",
    "GUNICORN_CMD_ARGS": "--access-logfile -",
    "FORWARDED_ALLOW_IPS": "*",
    "PYTHONUNBUFFERED": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unpack(slug: Path, into: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(slug), "-C", str(into)], check=True)
    return time.perf_counter() - started


def slug_python(app: Path) -> Path:
    return sorted((app / ".heroku" / "python" / "bin").glob("python3.*[0-9]"))[0]


def slug_env(app: Path) -> dict[str, str]:
    """What the buildpack's profile.d script sets on a dyno, for the slug unpacked at `app`."""
    home = app / ".heroku" / "python"
    return {
        "PATH": f"{home / 'bin'}:{os.environ['PATH']}",
        "LD_LIBRARY_PATH": str(home / "lib"),
        "PYTHONHOME": str(home),
        "HOME": str(app),
    }


def dyno_environ() -> dict[str, str]:
    """This environment, minus what a dyno lacks: this machine sets PYTHONDONTWRITEBYTECODE,
    and then every boot would compile the app's code again instead of only the first."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wait_for_healthz(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"/healthz did not answer within {timeout} s")


def boot_web(python: Path, cwd: Path, env: dict[str, str], storage: Path) -> float:
    """Seconds from starting `gunicorn 'main:create_app()'` to /healthz answering 200."""
    port = free_port()
    env = {**dyno_environ(), **BUILDPACK_ENV, **env, "PORT": str(port), "STORAGE_URL": str(storage)}
    command = [str(python), "-m", "gunicorn", "main:create_app()", "--bind", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_healthz(port, process)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def boot_worker(python: Path, cwd: Path, env: dict[str, str], storage: Path) -> float:
    """Seconds from starting `flask --app main trainer` to its first line (it then polls)."""
    env = {**dyno_environ(), **env, "DYNO": "worker.1", "STORAGE_URL": str(storage)}
    command = [str(python), "-m", "flask", "--app", "main", "trainer"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in process.stdout:
            if line.startswith("trainer: storage"):
                return time.perf_counter() - started
        raise RuntimeError(f"the trainer exited with {process.wait()} before starting")
    finally:
        process.terminate()
        process.wait(timeout=30)


def summary(seconds: list[float]) -> str:
    if len(seconds) == 1:
        return f"{seconds[0]:.2f}"
    return f"{statistics.median(seconds):.2f} ({min(seconds):.2f}–{max(seconds):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slug", type=Path, default=Path("/tmp/digits-slug/slug.tar.gz"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help="also time the worker's start")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    if not args.slug.exists():
        sys.exit(f"{args.slug} is missing: run scripts/slug_size.py first")
    scratch = Path(tempfile.mkdtemp(prefix="digits-boot-"))
    try:
        unpack_seconds = unpack(args.slug, scratch)
        app = scratch / "app"
        sides = {
            "slug (its own Python)": (slug_python(app), app, slug_env(app)),
            "baseline: this checkout's .venv": (ROOT / ".venv" / "bin" / "python", ROOT, {}),
        }
        web = {name: [] for name in sides}
        for run in range(args.runs):
            for name, (python, cwd, env) in sides.items():
                web[name].append(boot_web(python, cwd, env, scratch / f"storage-{run}"))
        worker = {}
        if args.worker:
            name = next(iter(sides))
            python, cwd, env = sides[name]
            worker[name] = boot_worker(python, cwd, env, scratch / "storage-worker")
        lines = [
            "# Boot time",
            "",
            f"Slug {args.slug} ({args.slug.stat().st_size / 2**20:.0f} MB) unpacked in "
            f"{unpack_seconds:.1f} s. Web: start of `gunicorn 'main:create_app()'` (2 workers, "
            f"the buildpack's environment) to the first 200 from /healthz, median (range) of "
            f"{args.runs}, on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
            "at the end.",
            "",
            "| side | web: start to /healthz, s | worker: start to its loop, s |",
            "|---|---:|---:|",
        ]
        for name in sides:
            worker_cell = f"{worker[name]:.1f}" if name in worker else "–"
            lines.append(f"| {name} | {summary(web[name])} | {worker_cell} |")
        report = "\n".join(lines) + "\n"
        print(report)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "boot.md").write_text(report)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
