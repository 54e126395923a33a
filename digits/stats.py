"""Accuracy of the two nets, measured on real feedback: what `GET /api/stats` returns.

The answers' part comes from the database's tallies (digits/records.py): two small grouped
queries whose cost follows the days and versions, not the number of answers. The versions' part
comes from the database's cards (digits/lifecycle.py): the newest KEEP_VERSIONS, the pinned and
the served ones, never every metrics.json. The whole answer is computed and rendered at most
once per CACHE_SECONDS per process, and concurrent callers share that one computation
(digits/cached.py). Only feedback with a digit counts for accuracy ("not a digit" has no right
answer among 0-9).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from digits import db, lifecycle, records
from digits.cached import SharedAnswer
from digits.nets import NETS
from digits.storage import Storage

CACHE_SECONDS = 5.0
# The stats as the view sends them: the rendered body and its ETag (public.rendered_json).
Rendered = tuple[bytes, str]

_answers: SharedAnswer[Rendered] = SharedAnswer(CACHE_SECONDS)


def cached_stats(
    storage: Storage,
    engine: Engine,
    models_dir: str,
    shown: int,
    render: Callable[[dict], Rendered],
) -> Rendered:
    """render(compute()) at most once per CACHE_SECONDS per process, shared by concurrent
    callers. The view keeps the answer as its bytes, so a cached call renders nothing
    (digits/public.py); every caller in a process renders the same way."""
    key = (storage.url, str(engine.url), str(models_dir), shown)
    return _answers.get(key, lambda: render(compute(storage, engine, models_dir, shown)))


def clear_cache() -> None:
    _answers.clear()


def compute(storage: Storage, engine: Engine, models_dir: str, shown: int) -> dict:
    with db.reading(engine) as conn:
        answer = records.accuracy_stats(conn)
    return answer | {"versions": versions(storage, engine, models_dir, shown)}


def versions(storage: Storage, engine: Engine, models_dir: str, shown: int) -> list[dict]:
    """Each net's versions ("original" first; then the newest `shown`, the pinned ones and the
    one served, from the database's rows), its metrics card and whether it serves."""
    listed = lifecycle.listed(storage, engine, models_dir, shown)
    return [version_entry(net, entry) for net in NETS for entry in listed[net]]


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
