"""Measure the Heroku slug as the Python buildpack would build it, without Heroku.

A slug is a tar.gz of /app: the pushed repository files (minus `.slugignore`), what
`bin/post_compile` wrote during the build, the Python runtime (`.heroku/python`), and every
package from `requirements.txt`. This script builds the same parts locally:

1. `pip install -r requirements.txt --target DIR` into an empty folder, by the runtime's pip;
2. the files git would push (`git ls-files`), minus the `.slugignore` patterns;
3. bin/post_compile's output: the verified MNIST files in data/mnist (fetched if missing);
4. a CPython install tree of the version in `.python-version` (pyenv's, when this machine has
   one; else this Python's, `sys.base_prefix`), minus test suites and static libs;

then streams them through tar + gzip and reports the compressed size against the target
(900 MB, leaving room under Heroku's limit of 1 GB, taken as 1,000 MB) and the largest parts.
The slug is left at WORK/slug.tar.gz, where bench/boot.py unpacks and boots it.

    .venv/bin/python scripts/slug_size.py            # install, measure, write bench/out/slug.md
    .venv/bin/python scripts/slug_size.py --reuse    # skip pip if the folder is already there
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import os
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
TARGET_MB = 900
HEROKU_LIMIT_MB = 1000  # "1 GB" since March 2026 (500 MB before)
PYENV_VERSIONS = Path.home() / ".pyenv" / "versions"
# Test suites inside CPython's own library: the buildpack's runtime leaves them out too.
RUNTIME_SKIP = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "turtledemo",
    "ensurepip",
}


class CountingWriter:
    """Counts bytes on their way to the file, so each part's compressed size is known."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def python_version() -> str:
    return (ROOT / ".python-version").read_text().strip()


def default_runtime() -> Path:
    """The newest pyenv install of .python-version's minor, else the running Python's tree."""
    version = python_version()
    found = sorted(
        PYENV_VERSIONS.glob(f"{version}.*"), key=lambda p: [int(n) for n in p.name.split(".")]
    )
    return found[-1] if found else Path(sys.base_prefix)


def runtime_python(runtime: Path) -> Path:
    """The runtime's own interpreter, so pip picks the wheels of that Python version."""
    candidates = sorted(runtime.glob("bin/python3.*[0-9]"))
    return candidates[0] if candidates else Path(sys.executable)


def runtime_minor(runtime: Path) -> str:
    return runtime_python(runtime).name.removeprefix("python")


def pip_install(target: Path, requirements: Path, python: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-warn-script-location", "--target", str(target), "-r", str(requirements)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def slugignore_patterns(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line.strip("/") for line in lines if line]


def ignored(relative: str, patterns: list[str]) -> bool:
    """`.gitignore`-like: a pattern matches the path, any leading folder, or any file name."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(candidate, pattern)
        for pattern in patterns
        for candidate in [*prefixes, *parts]
    )


def repo_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    patterns = slugignore_patterns(ROOT / ".slugignore")
    names = [n for n in listed.decode().split("\0") if n]
    return [n for n in names if (ROOT / n).is_file() and not ignored(n, patterns)]


def build_output() -> list[Path]:
    """What bin/post_compile adds to the slug: MNIST, verified (fetched here if missing)."""
    sys.path.insert(0, str(ROOT))
    from digits import mnist

    folder = mnist.fetch()
    return [folder / name for name in mnist.MD5]


def runtime_files(prefix: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(prefix):
        dirnames[:] = sorted(d for d in dirnames if d not in RUNTIME_SKIP)
        for name in sorted(filenames):
            # The static libpython (45 MB) is only for embedding; Heroku's runtime drops it. It
            # ships the stdlib's bytecode (without the -O and -OO variants), so Python need not
            # compile the stdlib at every boot.
            if not name.endswith((".a", ".opt-1.pyc", ".opt-2.pyc")):
                yield Path(dirpath) / name


def package_of(target: Path) -> dict[str, str]:
    """Top-level entry in the target folder -> the distribution that installed it."""
    owners = {}
    for info in target.glob("*.dist-info"):
        distribution = info.name.split("-")[0]
        owners[info.name] = distribution
        record = info / "RECORD"
        if record.exists():
            for line in record.read_text().splitlines():
                top = line.split(",", 1)[0].split("/", 1)[0]
                if top and not top.startswith(".."):
                    owners.setdefault(top, distribution)
    return owners


def package_groups(target: Path) -> dict[str, list[Path]]:
    owners = package_of(target)
    groups: dict[str, list[Path]] = defaultdict(list)
    for entry in sorted(target.iterdir()):
        group = owners.get(entry.name, entry.name)
        files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        groups[group].extend(files)
    return groups


def build(output: Path, target: Path, runtime: Path, level: int) -> list[tuple[str, int, int, int]]:
    """Write the slug and return (part, files, raw bytes, compressed bytes) per part."""
    parts: list[tuple[str, list[tuple[Path, str]]]] = [
        ("app (repository files)", [(ROOT / n, f"app/{n}") for n in repo_files()]),
        (
            "bin/post_compile output (MNIST)",
            [(p, f"app/{p.relative_to(ROOT)}") for p in build_output()],
        ),
        (
            f"python runtime ({runtime})",
            [(p, f"app/.heroku/python/{p.relative_to(runtime)}") for p in runtime_files(runtime)],
        ),
    ]
    site = f"app/.heroku/python/lib/python{runtime_minor(runtime)}/site-packages"
    for group, files in package_groups(target).items():
        parts.append((group, [(p, f"{site}/{p.relative_to(target)}") for p in files]))
    sizes = []
    with open(output, "wb") as raw:
        counter = CountingWriter(raw)
        with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=level, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, files in parts:
                    before, total = counter.count, 0
                    for path, arcname in files:
                        tar.add(path, arcname=arcname, recursive=False)
                        total += path.lstat().st_size
                    gz.flush()  # so this part's compressed bytes are counted against it
                    sizes.append((name, len(files), total, counter.count - before))
    return sizes


def report(sizes: list[tuple[str, int, int, int]], total: int, seconds: float, top: int) -> str:
    verdict = "within target" if total <= TARGET_MB * MB else "OVER TARGET"
    lines = [
        "# Slug size",
        "",
        f"Compressed slug: **{total / MB:.1f} MB** — target ≤ {TARGET_MB} MB "
        f"(Heroku's limit {HEROKU_LIMIT_MB} MB): {verdict}.",
        f"Uncompressed: {sum(s[2] for s in sizes) / MB:.1f} MB in "
        f"{sum(s[1] for s in sizes)} files; built in {seconds:.0f} s.",
        "",
        f"Largest {top} parts:",
        "",
        "| part | files | uncompressed MB | compressed MB |",
        "|---|---:|---:|---:|",
    ]
    for name, files, raw, packed in sorted(sizes, key=lambda s: -s[3])[:top]:
        lines.append(f"| {name} | {files} | {raw / MB:.1f} | {packed / MB:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/digits-slug"))
    parser.add_argument("--reuse", action="store_true", help="reuse an earlier pip install")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--runtime", type=Path, default=default_runtime())
    parser.add_argument("--level", type=int, default=6, help="gzip level (gzip's default is 6)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "out" / "slug.md")
    args = parser.parse_args()

    target = args.work / "site-packages"
    if not (args.reuse and target.is_dir()):
        if target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        pip_install(target, args.requirements, runtime_python(args.runtime))
    started = time.monotonic()
    output = args.work / "slug.tar.gz"
    sizes = build(output, target, args.runtime, args.level)
    total = output.stat().st_size
    text = report(sizes, total, time.monotonic() - started, args.top)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)
    return 0 if total <= TARGET_MB * MB else 1


if __name__ == "__main__":
    sys.exit(main())
