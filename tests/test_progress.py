"""The trainer's queue (digits/progress.py): what is new from the database, records from storage."""

from __future__ import annotations

import json

from digits import dataset, db, feedback, progress, records
from tests.helpers import random_records


def answered(storage, engine, count: int = 60) -> list[dict]:
    given = random_records(count, seed=21)
    for record in given:
        feedback.commit_once(storage, engine, record)
    return given


def test_pending_records_come_from_storage_a_chunk_at_a_time(store, engine):
    given = answered(store, engine)
    learnable = sorted(r["id"] for r in given if r["consent"] and r["digit"] is not None)
    chunk = progress.pending_records(store, engine, "fnn", limit=5)
    assert [r["id"] for r in chunk] == learnable[:5]
    assert chunk[0] == next(r for r in given if r["id"] == learnable[0])  # with its drawing
    marked = progress.write_progress(store, engine, "fnn", learnable[:5], "learned", version="v1")
    assert marked == learnable[:5]
    assert [r["id"] for r in progress.pending_records(store, engine, "fnn", 3)] == learnable[5:8]
    marker = json.loads(store.get(progress.marker_key("fnn", learnable[0])).data)
    assert marker["status"] == "learned" and marker["version"] == "v1"
    assert progress.statuses(engine, "fnn", learnable[:6]) == dict.fromkeys(
        learnable[:5], "learned"
    )
    replay = progress.replay_records(store, engine, "fnn", 100)
    assert sorted(r["id"] for r in replay) == learnable[:5]
    held = progress.held_out_records(store, engine, 100)
    assert all(records.feedback_held_out(r["id"]) for r in held)


def test_a_marker_written_before_a_crash_is_completed_by_the_next_marking(store, engine):
    given = answered(store, engine)
    first = next(r["id"] for r in given if r["consent"] and r["digit"] is not None)
    store.put(progress.marker_key("cnn", first), b'{"status": "learned", "at": "x"}')  # crash
    assert first in [r["id"] for r in progress.pending_records(store, engine, "cnn")]
    assert progress.write_progress(store, engine, "cnn", [first], "learned") == [first]
    assert first not in [r["id"] for r in progress.pending_records(store, engine, "cnn")]


def test_uncopied_records_are_consented_drawings_missing_from_the_index(store, engine):
    given = answered(store, engine, 30)
    consented = sorted(r["id"] for r in given if r["consent"])
    assert [r["id"] for r in progress.uncopied_records(store, engine)] == consented
    copied = next(r for r in given if r["consent"])
    name = feedback.save_to_dataset(store, copied)
    with db.writing(engine) as conn:
        records.index_drawing(conn, dataset.metadata(store, name))
        records.mark_deleted(conn, name)  # deleted by an admin since: not copied again
    left = [r["id"] for r in progress.uncopied_records(store, engine)]
    assert left == [i for i in consented if i != copied["id"]]
