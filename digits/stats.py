"""Accuracy of the two nets, measured on real feedback: what `GET /api/stats` returns.

Feedback records are written once and never change, so each process keeps the ones it has read
and fetches only new keys; the finished answer is cached for a few seconds on top of that.
Only feedback with a digit counts for accuracy ("not a digit" has no right answer among 0-9).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from digits import feedback, registry
from digits.nets import NETS
from digits.storage import NotFound, Storage

CACHE_SECONDS = 5.0

_lock = threading.Lock()
_records: dict[str, dict[str, dict]] = {}  # storage url -> prediction id -> feedback record
_answers: dict[tuple[str, str], tuple[float, dict]] = {}  # (url, models dir) -> (time, stats)


def cached_stats(storage: Storage, models_dir: str) -> dict:
    """compute() at most once per CACHE_SECONDS per process."""
    key = (storage.url, str(models_dir))
    with _lock:
        hit = _answers.get(key)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    answer = compute(storage, models_dir)
    with _lock:
        _answers[key] = (time.monotonic(), answer)
    return answer


def clear_cache() -> None:
    with _lock:
        _records.clear()
        _answers.clear()


def all_records(storage: Storage) -> list[dict]:
    """Every feedback record, reading only those this process has not seen yet."""
    with _lock:
        known = _records.setdefault(storage.url, {})
    for prediction_id in feedback.ids(storage):
        if prediction_id in known:
            continue
        try:
            record = feedback.load(storage, prediction_id)
        except NotFound:
            continue
        with _lock:
            known[prediction_id] = record
    with _lock:
        return list(known.values())


def compute(storage: Storage, models_dir: str) -> dict:
    records = all_records(storage)
    labelled = [r for r in records if r.get("digit") is not None]
    return {
        "totals": totals(records, labelled),
        "timeline": timeline(labelled),
        "per_digit": {net: per_digit(labelled, net) for net in NETS},
        "confusion": {net: confusion(labelled, net) for net in NETS},
        "versions": versions(storage, models_dir),
    }


def tally(correct: int, total: int) -> dict:
    return {"correct": correct, "total": total, "accuracy": correct / total if total else None}


def totals(records: list[dict], labelled: list[dict]) -> dict:
    out: dict = {"feedback": len(records)}
    for net in NETS:
        right = sum(1 for r in labelled if r[net]["digit"] == r["digit"])
        out[net] = tally(right, len(labelled))
    return out


def timeline(labelled: list[dict]) -> list[dict]:
    """One point per day, net and serving version, oldest first.

    `time` is the mean time of the point's answers: versions that served on the same day get
    their own places on a time axis instead of one spot for the day.
    """
    groups: dict[tuple[str, str, str], list] = {}  # -> [correct, total, sum of answer times]
    for r in labelled:
        answered = datetime.fromisoformat(r["created"]).timestamp()
        for net in NETS:
            version = r.get("versions", {}).get(net, "original")
            sums = groups.setdefault((r["created"][:10], net, version), [0, 0, 0.0])
            sums[0] += r[net]["digit"] == r["digit"]
            sums[1] += 1
            sums[2] += answered
    return [
        {"date": date, "time": mean_time(seconds / total), "net": net, "version": version}
        | tally(correct, total)
        for (date, net, version), (correct, total, seconds) in sorted(groups.items())
    ]


def mean_time(timestamp: float) -> str:
    return datetime.fromtimestamp(round(timestamp), UTC).isoformat()


def per_digit(labelled: list[dict], net: str) -> list[float | None]:
    """Recall per true digit: of the drawings that were d, the share the net called d."""
    right, total = [0] * 10, [0] * 10
    for r in labelled:
        total[r["digit"]] += 1
        right[r["digit"]] += r[net]["digit"] == r["digit"]
    return [right[d] / total[d] if total[d] else None for d in range(10)]


def confusion(labelled: list[dict], net: str) -> list[list[int]]:
    """Rows: the true digit; columns: what the net said."""
    matrix = [[0] * 10 for _ in range(10)]
    for r in labelled:
        matrix[r["digit"]][r[net]["digit"]] += 1
    return matrix


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
