"""Versions bench: what the pages' list of model versions costs, by versions per net, and a prune.

    .venv/bin/python bench/versions.py                          # 100 and 500 per net; folder, S3
    .venv/bin/python bench/versions.py --sizes 1000 --storage s3

Storage gets N versions per net as the trainer leaves them (model.tflite, model.keras and a
metrics.json card listing 500 learned ids), a minute apart, the pointer on the newest, and
`model_versions` the rows the trainer writes (SQLite). Measured, for both nets:
- baseline, in the same run: what /api/stats and `flask models list` did before the table,
  listing the versions and reading every metrics.json, one after another (registry.versions);
- now: `lifecycle.listed` with KEEP_VERSIONS 10 (one pointer read and a query per net), the
  median of 5;
- `lifecycle.prune` down to 10 per net, and the objects under models/ before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import BUCKET, Moto  # noqa: E402
from digits import db, lifecycle, records, registry  # noqa: E402
from digits.nets import NETS  # noqa: E402
from digits.storage import LocalStorage, open_storage  # noqa: E402

KEEP = 10
WRITERS = 16
MODELS_DIR = str(ROOT / "models")


def fill(storage, engine, per_net: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for net in NETS:
        versions = [registry.new_version(start + timedelta(minutes=i)) for i in range(per_net)]
        with ThreadPoolExecutor(WRITERS) as pool:
            rows = list(pool.map(lambda v, n=net: store_version(storage, n, v), versions))
        with db.writing(engine) as conn:
            for row in rows:
                records.add_version(conn, row)
        registry.move_pointer(storage, net, versions[-1], by="bench")


def store_version(storage, net: str, version: str) -> dict:
    card = {"net": net, "version": version, "created": version, "mnist_test_accuracy": 0.99}
    card["feedback_ids"] = [f"p{i:039d}" for i in range(500)]
    for name in ("model.tflite", "model.keras"):
        storage.put(registry.version_key(net, version, name), b"\0" * 1024)
    storage.put(registry.version_key(net, version, "metrics.json"), json.dumps(card).encode())
    return lifecycle.card_row(net, card)


def every_card(storage) -> int:
    """The code before the table: list, then read each card, one after another."""
    read = 0
    for net in NETS:
        for version in registry.published(storage, net):
            json.loads(storage.get(registry.version_key(net, version, "metrics.json")).data)
            read += 1
    return read


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def listing_ms(storage, engine) -> float:
    """The median of 5 calls of what the pages call now."""
    runs = [timed(lambda: lifecycle.listed(storage, engine, MODELS_DIR, KEEP))[0] for _ in range(5)]
    return statistics.median(runs) * 1000


def measure(storage, engine, per_net: int) -> dict:
    fill(storage, engine, per_net)
    before, read = timed(lambda: every_card(storage))
    assert read == per_net * len(NETS)
    now = listing_ms(storage, engine)
    keys_before = sum(1 for _ in storage.list("models/"))
    pruned, _ = timed(lambda: [lifecycle.prune(storage, engine, net, KEEP) for net in NETS])
    keys_after = sum(1 for _ in storage.list("models/"))
    after = listing_ms(storage, engine)
    return {
        "per_net": per_net,
        "before_s": before,
        "now_ms": now,
        "prune_s": pruned,
        "keys": f"{keys_before:,} → {keys_after:,}",
        "after_ms": after,
    }


def row(kind: str, result: dict) -> str:
    return (
        f"| {kind} | {result['per_net']:,} | {result['before_s']:.2f} s | {result['now_ms']:.1f} ms"
        f" | {result['prune_s']:.2f} s | {result['keys']} | {result['after_ms']:.1f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--storage", choices=["local", "s3", "both"], default="both")
    args = parser.parse_args()
    kinds = ["local", "s3"] if args.storage == "both" else [args.storage]
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)  # moto takes any
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    lines = [
        "| storage | versions per net | baseline: every card | now: listed (newest 10) |"
        " prune to 10 | objects under models/ | listed after the prune |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    moto = Moto() if "s3" in kinds else None
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for kind in kinds:
                for size in (int(s) for s in args.sizes.split(",")):
                    where = Path(scratch) / f"{kind}-{size}"
                    if kind == "s3":
                        storage = open_storage(f"s3://{BUCKET}/{kind}-{size}", moto.endpoint)
                    else:
                        storage = LocalStorage(where / "storage")
                    engine = db.make_engine(f"sqlite:///{where}.sqlite3")
                    db.upgrade(engine)
                    lines.append(row(kind, measure(storage, engine, size)))
                    print(lines[-1], flush=True)
                    engine.dispose()
    finally:
        if moto:
            moto.process.kill()  # its data is thrown away
            moto.process.wait()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
