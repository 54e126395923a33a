"""Trainer memory: the peak RSS of one `flask --app main trainer --once` pass, by backlog size.

    .venv/bin/python bench/trainer_memory.py                       # 40, 1,000, 10,000 pending
    .venv/bin/python bench/trainer_memory.py --sizes 40 --baseline-sizes 40

For each size, a fresh local folder and SQLite database get that many consented corrections
through the app's own code (POST /api/predict, then POST /api/feedback, in-process), and one
trainer pass runs in a child process whose peak RSS is read from the kernel (wait4's ru_maxrss).
Baseline, in the same run: the trainer as it was before the records database (commit a7f518d,
checked out in a temporary worktree) on the same storage folder, which holds the same feedback
records in the JSON layout that trainer reads.

A standard-2x worker dyno has 1 GB: the target is a peak of at most 900 MB. Needs MNIST
(`python -m digits.mnist`). Results: a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits import mnist, predictions  # noqa: E402
from digits.png import data_url  # noqa: E402
from main import create_app  # noqa: E402

BASELINE = "a7f518d"
TARGET_MB = 900


def canvas_png(digit: np.ndarray) -> bytes:
    """An MNIST digit scaled up to the pad's 200×200, dark ink on white as the page sends."""
    big = np.kron(255 - digit, np.ones((7, 7), np.uint8))
    canvas = np.full((200, 200), 255, np.uint8)
    canvas[2:198, 2:198] = big
    buffer = io.BytesIO()
    Image.fromarray(canvas).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def fill(storage_dir: Path, database_url: str, count: int) -> None:
    """`count` consented corrections, through the API, as users would give them."""
    app = create_app(
        {
            "STORAGE_URL": str(storage_dir),
            "DATABASE_URL": database_url,
            "LOG_REQUESTS": False,
            "RATE_LIMIT_FEEDBACK": "off",
        }
    )
    client = app.test_client()
    images, labels = mnist.load("test")
    images, labels = images[np.arange(count) % len(images)], labels[np.arange(count) % len(labels)]
    ids = []
    for image in images:
        answer = client.post("/api/predict", json={"imageBase64": data_url(canvas_png(image))})
        ids.append(answer.get_json()["id"])
    predictions.flush(60)
    for pid, label in zip(ids, labels, strict=True):
        answer = client.post(
            "/api/feedback", json={"id": pid, "digit": int(label), "consent": True}
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)


def trainer_pass(cwd: Path, env: dict) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one trainer pass run from `cwd`."""
    started = time.monotonic()
    child = subprocess.Popen(
        [str(ROOT / ".venv/bin/flask"), "--app", "main", "trainer", "--once"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    return usage.ru_maxrss / 1024, time.monotonic() - started, os.waitstatus_to_exitcode(status)


def baseline_checkout(where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "-q", str(where), BASELINE], cwd=ROOT, check=True)
    (where / "data").symlink_to(ROOT / "data")  # the same MNIST cache
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,1000,10000")
    parser.add_argument("--baseline-sizes", default="40,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline_sizes = {int(s) for s in args.baseline_sizes.split(",") if s}
    rows = [
        "| pending | code | peak RSS MB | pass s | exit | ≤ 900 MB |",
        "|---:|---|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_checkout(Path(tmp) / "baseline") if baseline_sizes else None
        try:
            for size in sizes:
                rows += measure(
                    Path(tmp) / f"n{size}", size, old if size in baseline_sizes else None
                )
                print("\n".join(rows), flush=True)
        finally:
            if old is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    print("\n".join(rows))


def measure(folder: Path, size: int, old: Path | None) -> list[str]:
    storage, database = folder / "storage", f"sqlite:///{folder / 'records.sqlite3'}"
    fill(storage, database, size)
    runs = [("database (now)", ROOT, storage)]
    if old is not None:  # its own copy: each trainer writes markers as it learns
        runs.append((f"before ({BASELINE})", old, shutil.copytree(storage, folder / "copy")))
    rows = []
    for code, cwd, where in runs:
        env = {**os.environ, "STORAGE_URL": str(where), "DATABASE_URL": database}
        env["TRAINER_MIN_NEW"] = "1"  # learn whatever the backlog (the baseline ignores it)
        peak, seconds, status = trainer_pass(cwd, env)
        ok = "yes" if status == 0 and peak <= TARGET_MB else "no"
        rows.append(f"| {size:,} | {code} | {peak:.0f} | {seconds:.0f} | {status} | {ok} |")
    return rows


if __name__ == "__main__":
    main()
