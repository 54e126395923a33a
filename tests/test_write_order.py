"""Storage is written before the database's short transaction, never inside it (issue 18).

A feedback record is put (storage's once-guarantee), then its row and tallies are added; a
drawing's two blobs are put, then its index row is added. So SQLite's one write lock is never
held while storage writes, and what the database refuses is withdrawn from storage.
"""

from __future__ import annotations

import json
import threading

import pytest

from digits import dataset, db, feedback, records
from digits.storage import LocalStorage
from tests.helpers import data_url, drawing_png, random_records, stored_files, table_rows

SAVES = {
    "/hook": ({"imageBase64": data_url(drawing_png()), "digit": 7}, 201),
    "/api/feedback": ({"id": "p1", "digit": 3, "consent": False}, 202),
}


def down(*args, **kwargs):
    raise db.DatabaseUnavailable("database unavailable: OperationalError")


def answered_rows(engine) -> tuple[list, int]:
    """The feedback rows, and the answers the tallies count (one per net and answer)."""
    tallies = table_rows(engine, db.feedback_tally)
    return table_rows(engine, db.feedback), sum(row.answers for row in tallies)


# --- the lock is not held while storage writes -------------------------------------------------


@pytest.mark.parametrize("path", SAVES)
def test_no_write_lock_is_held_while_storage_writes(app, made, monkeypatch, path):
    """While a save's first put waits, another thread's write transaction on the same SQLite
    database commits: the save holds no lock then (before, it held SQLite's for the put)."""
    storage, engine = app.extensions["storage"], db.engine_of(app)
    entered, release = threading.Event(), threading.Event()
    real_put = storage.put

    def slow_put(key, data, **kwargs):
        if key.startswith(("drawings/", "feedback/")) and not entered.is_set():
            entered.set()
            release.wait(30)
        return real_put(key, data, **kwargs)

    monkeypatch.setattr(storage, "put", slow_put)
    body, expected = SAVES[path]
    statuses: list[int] = []
    saving = threading.Thread(
        target=lambda: statuses.append(app.test_client().post(path, json=body).status_code)
    )
    saving.start()
    assert entered.wait(30), "the save never reached storage"
    other = threading.Thread(target=index_one, args=(engine, "3_20260101T000000000000_0a0b0c"))
    other.start()
    other.join(2.0)  # the busy timeout is 5 s: a held lock keeps it waiting past this
    waited = other.is_alive()
    release.set()
    saving.join(30)
    other.join(30)
    assert not waited, "a write transaction waited for a storage put"
    assert statuses == [expected]
    with db.reading(engine) as conn:
        assert records.is_indexed(conn, "3_20260101T000000000000_0a0b0c")


def index_one(engine, name: str) -> None:
    with db.writing(engine) as conn:
        records.index_drawing(conn, {"name": name, "label": name[0]})


# --- the database down after the put: 503, withdrawn --------------------------------------------


def test_feedback_with_the_database_down_after_its_put_saves_nothing(
    client, made, storage_dir, monkeypatch
):
    engine = db.engine_of(client.application)
    with monkeypatch.context() as patch:
        patch.setattr(records, "add_feedback", down)
        refused = client.post("/api/feedback", json={"id": "p1", "digit": 3, "consent": True})
        feedback.flush()
    assert refused.status_code == 503 and "nothing was saved" in refused.json["error"]
    assert stored_files(storage_dir) == []  # the record was put, then withdrawn
    assert answered_rows(engine) == ([], 0)
    again = client.post("/api/feedback", json={"id": "p1", "digit": 3, "consent": True})
    assert again.status_code == 202  # nothing left behind to refuse it


def test_a_save_with_the_database_down_after_its_puts_saves_nothing(
    client, storage_dir, monkeypatch
):
    with monkeypatch.context() as patch:
        patch.setattr(records, "index_drawing", down)
        refused = client.post("/hook", json=SAVES["/hook"][0])
    assert refused.status_code == 503 and "nothing was saved" in refused.json["error"]
    assert stored_files(storage_dir) == []  # both blobs were put, then withdrawn
    assert client.get("/api/dataset/counts").json["total"] == 0
    assert client.post("/hook", json=SAVES["/hook"][0]).status_code == 201


def test_a_drawing_copy_keeps_its_blobs_when_the_database_fails(tmp_path, engine, monkeypatch):
    """A copy's name may be another copy's that committed: its blobs stay for the backfill."""
    storage, record = LocalStorage(tmp_path / "s"), random_records(1)[0]
    record |= {"consent": True, "image": data_url(drawing_png()).split(",", 1)[1]}
    monkeypatch.setattr(records, "index_drawing", down)
    with pytest.raises(db.DatabaseUnavailable):
        feedback.copy_to_dataset(storage, engine, record)
    assert dataset.names(storage) == [feedback.dataset_name(record)]


# --- the row of a record that was put ------------------------------------------------------------


class RaceAfterPut(LocalStorage):
    """Runs `then()` once, right after the first feedback record is written: a second answer
    arriving between the winner's put and its row."""

    then = staticmethod(lambda: None)

    def put(self, key, data, **kwargs):
        written = super().put(key, data, **kwargs)
        then, self.then = self.then, staticmethod(lambda: None)
        then()
        return written


def test_a_winner_whose_record_a_loser_adopted_first_succeeds_counted_once(tmp_path, engine):
    storage = RaceAfterPut(tmp_path / "s")
    winner = random_records(1)[0]
    loser = {**winner, "created": "2026-12-01T00:00:00.000001+00:00", "digit": 9}

    def loser_answers() -> None:
        with pytest.raises(feedback.AlreadyAnswered):
            feedback.commit_once(storage, engine, loser)  # refused put: adopts the winner's

    storage.then = loser_answers
    feedback.commit_once(storage, engine, winner)  # its row is there already: success
    rows, answers = answered_rows(engine)
    assert len(rows) == 1 and answers == 2  # one answer, one tally per net
    with db.reading(engine) as conn:
        assert records.holds_record(conn, winner)
    assert feedback.load(storage, winner["id"]) == json.loads(json.dumps(winner))


def test_a_row_that_landed_although_the_database_failed_keeps_the_record(
    tmp_path, engine, monkeypatch
):
    """A commit whose reply was lost (PostgreSQL's connection dropped after COMMIT) is found
    by a read: success, and the record stays."""
    storage, record = LocalStorage(tmp_path / "s"), random_records(1)[0]
    real_add = records.add_feedback

    def committed_then_lost(engine, record):
        real_add(engine, record)
        down()

    monkeypatch.setattr(records, "add_feedback", committed_then_lost)
    feedback.commit_once(storage, engine, record)
    assert feedback.load(storage, record["id"])["digit"] == record["digit"]
    rows, answers = answered_rows(engine)
    assert len(rows) == 1 and answers == 2


def test_a_row_of_another_answer_without_its_record_refuses_and_withdraws(
    tmp_path, engine, monkeypatch
):
    """The prediction's row holds another answer but storage has no record (a state a lost
    race can leave): the new record is withdrawn and the answer refused, not mixed."""
    storage, first = LocalStorage(tmp_path / "s"), random_records(1)[0]
    records.add_feedback(engine, first)
    second = {**first, "created": "2026-12-01T00:00:00.000001+00:00", "digit": 9}
    monkeypatch.setattr(feedback, "already_answered", lambda *args: False)  # past the pre-check
    with pytest.raises(feedback.AlreadyAnswered):
        feedback.commit_once(storage, engine, second)
    assert list(storage.list("feedback/")) == []
    assert answered_rows(engine)[1] == 2
