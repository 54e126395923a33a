"""Accuracy of the two nets, measured on real feedback: what `GET /api/stats` returns.

The answers' part comes from the database's tallies (digits/records.py): two small grouped
queries whose cost follows the days and versions, not the number of answers. The whole answer
is computed and rendered at most once per CACHE_SECONDS per process, and concurrent callers
share that one computation (digits/cached.py). Only feedback with a digit counts for accuracy
("not a digit" has no right answer among 0-9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine

from digits import db, records, registry
from digits.cached import SharedAnswer
from digits.nets import NETS
from digits.storage import Storage

CACHE_SECONDS = 5.0
T = TypeVar("T")

_answers: SharedAnswer = SharedAnswer(CACHE_SECONDS)


def cached_stats(
    storage: Storage, engine: Engine, models_dir: str, render: Callable[[dict], T]
) -> T:
    """render(compute()) at most once per CACHE_SECONDS per process, shared by concurrent
    callers. The view keeps the answer as its bytes, so a cached call renders nothing
    (digits/public.py); every caller in a process renders the same way."""
    key = (storage.url, str(engine.url), str(models_dir))
    return _answers.get(key, lambda: render(compute(storage, engine, models_dir)))


def clear_cache() -> None:
    _answers.clear()


def compute(storage: Storage, engine: Engine, models_dir: str) -> dict:
    with db.reading(engine) as conn:
        answer = records.accuracy_stats(conn)
    return answer | {"versions": versions(storage, models_dir)}


def versions(storage: Storage, models_dir: str) -> list[dict]:
    """Every version of each net ("original" first), its metrics card and whether it serves."""
    out = []
    for net in NETS:
        for entry in registry.versions(storage, net, models_dir):
            out.append(version_entry(net, entry))
    return out


def version_entry(net: str, entry: dict) -> dict:
    metrics = entry.get("metrics") or {}
    return {
        "net": net,
        "version": entry["version"],
        "created": entry.get("created"),
        "current": bool(entry.get("current")),
        "metrics": {
            "mnist_test_accuracy": metrics.get("mnist_test_accuracy"),
            "user_heldout_accuracy": metrics.get("user_heldout_accuracy"),
        },
    }
