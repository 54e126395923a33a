"""The trainer's queue: what is new, asked of the database a chunk at a time, and its progress
written to both the database and storage.

The database says which feedback is pending for a net; storage holds the feedback records
themselves (with their drawings), read only for the ids asked for. Progress goes to storage
first, as a marker per net and sample (`trainer/<net>/<id>.json`, what `flask db rebuild` reads),
then to the database with the marker's time; a crash between the two leaves the sample pending
with its marker written, and the next pass's marking adds only the row (markers are rewritten
only identically in substance: same status and version).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from digits import dataset, db, feedback, records
from digits.storage import Storage

MARKERS = "trainer/"
CHUNK = records.CHUNK


def marker_key(net: str, prediction_id: str) -> str:
    return f"{MARKERS}{net}/{prediction_id}.json"


def load_records(storage: Storage, ids: list[str]) -> list[dict]:
    """The feedback records of these ids, in order, read in parallel; a missing one is left out."""
    return list(dataset.read_each(ids, lambda i: feedback.load(storage, i)))


def pending_records(storage: Storage, engine: Engine, net: str, limit: int = CHUNK) -> list[dict]:
    """At most `limit` learnable records this net has not dealt with, oldest id first."""
    with db.reading(engine) as conn:
        ids = records.pending(conn, net, limit=limit)
    return load_records(storage, ids)


def waiting(
    engine: Engine, net: str, min_new: int, max_wait: float, now: float | None = None
) -> str:
    """Why this net's pass should wait, or "" to go on: fewer than `min_new` new samples (held-out
    ones are never learned, so they do not count) and the oldest answered under `max_wait`
    seconds ago. Nothing new is "" too: the pass then finds nothing to learn, cheaply."""
    with db.reading(engine) as conn:
        count, oldest = records.pending_summary(conn, net)
    due = (oldest or 0.0) + max_wait
    if count == 0 or count >= min_new or (time.time() if now is None else now) >= due:
        return ""
    until = datetime.fromtimestamp(due, UTC).isoformat(timespec="minutes")
    return f"{count} new, need {min_new} or until {until}"


def replay_records(storage: Storage, engine: Engine, net: str, limit: int) -> list[dict]:
    """Up to `limit` records this net learned before, picked at random."""
    with db.reading(engine) as conn:
        ids = records.learned_sample(conn, net, limit)
    return load_records(storage, ids)


def held_out_records(storage: Storage, engine: Engine, limit: int) -> list[dict]:
    """The newest `limit` held-out learnable records: what a candidate is judged on."""
    with db.reading(engine) as conn:
        ids = records.held_out_ids(conn, limit)
    return load_records(storage, ids)


def write_progress(
    storage: Storage, engine: Engine, net: str, ids: list[str], status: str, **info
) -> list[str]:
    """Mark these samples dealt with, in storage then in the database; return the ids the
    database marked now (an id marked before keeps its first status)."""
    if not ids:
        return []
    at = datetime.now(UTC).isoformat()
    body = json.dumps({"status": status, "at": at, **info}).encode()
    for prediction_id in ids:
        storage.put(marker_key(net, prediction_id), body)
    with db.writing(engine) as conn:
        return records.mark(conn, net, ids, status, info.get("version"), at)


def statuses(engine: Engine, net: str, ids: list[str]) -> dict[str, str]:
    with db.reading(engine) as conn:
        return records.statuses(conn, net, ids)


def uncopied_records(storage: Storage, engine: Engine, limit: int = CHUNK) -> list[dict]:
    """Consented feedback whose drawing is not in the dataset's index (its copy failed, or was
    cut short), at most `limit`: what the trainer's pass copies again."""
    with db.reading(engine) as conn:
        ids = records.uncopied(conn, limit)
    return load_records(storage, ids)
