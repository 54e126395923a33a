"""`python -m digits.local`: the web app and the trainer on one machine, local storage.

Starts `flask --app main run` (on $PORT, default 5000) and `flask --app main trainer` as child
processes, and stops both on Ctrl-C or SIGTERM; if either dies, the other is stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from digits.config import check_settings

FLASK = [sys.executable, "-m", "flask", "--app", "main"]
ROOT = Path(__file__).resolve().parent.parent


def commands(port: str) -> list[list[str]]:
    return [
        [*FLASK, "run", "--host", "127.0.0.1", "--port", port],
        [*FLASK, "trainer"],
    ]


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            # As Ctrl-C, not SIGTERM: Python then exits cleanly and runs its at-exit hooks, so
            # the web app saves the predictions still queued for its background writer.
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()  # reaped here: a child left unreaped lingers as a zombie


def main() -> int:
    check_settings()
    port = os.environ.get("PORT", "5000")
    children = [subprocess.Popen(cmd, cwd=ROOT) for cmd in commands(port)]
    # SIGTERM (Heroku, systemd, kill) takes the same path as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(children)
    return max((child.returncode or 0) for child in children)


if __name__ == "__main__":
    sys.exit(main())
