"""moto's S3 server (conditional writes atomic, as in the tests) with a side door for filling it.

    python bench/moto_fill.py PORT       # then, on stdin, lines of: FOLDER<TAB>BUCKET<TAB>PREFIX

Filling moto over HTTP costs about 6.5 ms of its CPU a put, so the volume bench's 240,000 blobs
(100k feedback records, 50k drawings) would take over half an hour. The bench writes them
through the project's own storage code into a local folder instead, and this process copies
every file it has not loaded yet into its S3 backend under PREFIX (the same keys, the same bytes),
then answers the number of files loaded on stdout. Everything the app then does goes over HTTP.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from tests.helpers import MOTO_ATOMIC_PATCH  # noqa: E402

exec(MOTO_ATOMIC_PATCH)  # the tests' patch, applied in this process


def load_new(folder: Path, bucket: str, prefix: str, loaded: set[tuple]) -> int:
    """Put every file under `folder` not loaded before (by name, size and time) into the bucket."""
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    count = 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith(".tmp-"):
            continue
        stat = path.stat()
        key = path.relative_to(folder).as_posix()
        if (key, stat.st_size, stat.st_mtime_ns) in loaded:
            continue
        backend.put_object(bucket, prefix + key, path.read_bytes())
        loaded.add((key, stat.st_size, stat.st_mtime_ns))
        count += 1
    return count


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
    server.start()
    print("ready", flush=True)
    loaded: set[tuple] = set()
    for line in sys.stdin:
        folder, bucket, prefix = line.rstrip("\n").split("\t")
        print(load_new(Path(folder), bucket, prefix, loaded), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
