"""Which Python minor versions every pin in requirements.txt has Linux x86-64 wheels for.

`.python-version` must name one that they all have: Heroku's buildpack installs wheels only
where they exist, and a pin without one is built from source at deploy time (or fails). This
asks the package index through pip (metadata only, nothing is installed) and prints a table:

    .venv/bin/python scripts/python_wheels.py               # .python-version and the next minor
    .venv/bin/python scripts/python_wheels.py 3.12 3.13 3.14

Checked 2026-12-07: every pin has 3.13 wheels (SQLAlchemy, alembic, psycopg and psycopg-binary
included, checked again after the database came in); tensorflow-cpu 2.21.0 has none for 3.14.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The glibc tags a Heroku-24 dyno (Ubuntu 24.04, glibc 2.39) accepts, oldest first.
PLATFORMS = ["manylinux2014_x86_64"] + [
    f"manylinux_2_{minor}_x86_64" for minor in (17, 27, 28, 31, 34, 35, 39)
]


def pins(requirements: Path = ROOT / "requirements.txt") -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    found = [line for line in lines if line and not line.startswith("-")]
    return found + [binary for pin in found if (binary := compiled_extra(pin))]


# An extra whose wheels are another package's: pip's --no-deps would never look at them.
COMPILED_EXTRAS = {"psycopg[binary]": "psycopg-binary"}


def compiled_extra(pin: str) -> str | None:
    """psycopg[binary]==3.3.9 -> psycopg-binary==3.3.9, the package that holds the C code."""
    name, _, version = pin.partition("==")
    binary = COMPILED_EXTRAS.get(name)
    return f"{binary}=={version}" if binary else None


def wheel_for(pin: str, python: str) -> str | None:
    """The file name of the wheel pip would install for this pin on that Python, or None."""
    platforms = [option for tag in PLATFORMS for option in ("--platform", tag)]
    with tempfile.TemporaryDirectory() as target, tempfile.TemporaryDirectory() as out:
        report = Path(out) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps"]
        command += ["--ignore-installed", "--only-binary=:all:", "--implementation", "cp"]
        command += ["--python-version", python, *platforms, "--target", target]
        command += ["--report", str(report), pin]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return None
        url = json.loads(report.read_text())["install"][0]["download_info"]["url"]
        return url.rsplit("/", 1)[-1]


def next_minor(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + 1}"


def main(argv: list[str]) -> int:
    chosen = (ROOT / ".python-version").read_text().strip()
    versions = argv or [chosen, next_minor(chosen)]
    print("| pin | " + " | ".join(versions) + " |")
    print("|---|" + "---|" * len(versions))
    missing = []
    for pin in pins():
        wheels = [wheel_for(pin, version) for version in versions]
        missing += [(pin, v) for v, w in zip(versions, wheels, strict=True) if w is None]
        cells = ["NO WHEEL" if w is None else w.split("-", 2)[2] for w in wheels]
        print(f"| {pin} | " + " | ".join(cells) + " |")
    failed = [pin for pin, version in missing if version == chosen]
    print(f"\n.python-version is {chosen}: " + (f"MISSING {failed}" if failed else "all pins ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
