"""The records database (digits/db.py, digits/records.py), each case on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from digits import db, feedback, gallery, records
from digits.dataset import LABELS
from digits.storage import LocalStorage
from tests.helpers import (
    free_port,
    in_two_processes,
    random_records,
    record_all,
    reference_stats,
    table_rows,
)

# --- the schema ----------------------------------------------------------------------------------


def test_migrations_make_exactly_the_tables_in_db_py(engine):
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []
    assert db.revision(engine) == db.head()


def test_heroku_postgres_urls_get_the_psycopg_driver():
    assert db.database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert db.database_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert db.database_url("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"


def test_embedded_sqlite_is_made_and_upgraded_once(tmp_path):
    engine = db.make_engine(db.default_url(str(tmp_path / "instance")))
    db.upgrade_embedded(engine)
    db.upgrade_embedded(engine)  # the second start finds it current
    assert db.revision(engine) == db.head()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "instance" / "digits.sqlite3").exists()


# --- feedback, once -------------------------------------------------------------------------------


def test_feedback_is_recorded_once(engine):
    record = random_records(1)[0]
    records.add_feedback(engine, record)
    other = {**record, "created": "2026-11-24T05:34:22.000001+00:00", "digit": 9}
    with pytest.raises(records.AlreadyRecorded):
        records.add_feedback(engine, other)
    assert len(table_rows(engine, db.feedback)) == 1
    assert sum(row.answers for row in table_rows(engine, db.feedback_tally)) == 2  # one per net


def test_the_same_record_again_is_done_and_counted_once(engine):
    """A winner whose row a racing second answer adopted from its stored record first."""
    record = random_records(1)[0]
    records.add_feedback(engine, record)  # the loser's adoption
    records.add_feedback(engine, record)  # the winner's own insert: no error
    with db.reading(engine) as conn:
        assert records.holds_record(conn, record)
    assert len(table_rows(engine, db.feedback)) == 1
    assert sum(row.answers for row in table_rows(engine, db.feedback_tally)) == 2


def test_stats_from_the_tallies_equal_stats_from_every_record(engine):
    """The SQL aggregates answer exactly what stats.py computes from the records themselves."""
    given = random_records(300)
    record_all(engine, given)
    with db.reading(engine) as conn:
        answer = records.accuracy_stats(conn)
    assert answer == reference_stats(given)
    assert len({(p["date"], p["net"], p["version"]) for p in answer["timeline"]}) > 8


def test_stats_of_no_feedback(engine):
    with db.reading(engine) as conn:
        answer = records.accuracy_stats(conn)
    assert answer["totals"] == {
        "feedback": 0,
        "fnn": {"correct": 0, "total": 0, "accuracy": None},
        "cnn": {"correct": 0, "total": 0, "accuracy": None},
    }
    assert answer["timeline"] == [] and answer["per_digit"]["cnn"] == [None] * 10


def test_retally_makes_the_same_tallies(engine):
    record_all(engine, random_records(200, seed=3))
    before = table_rows(engine, db.feedback_tally)
    with db.writing(engine) as conn:
        records.retally(conn)
    after = table_rows(engine, db.feedback_tally)
    assert [row[:-1] for row in after] == [row[:-1] for row in before]
    for old, new in zip(before, after, strict=True):  # sums of times, added in another order
        assert new.seconds == pytest.approx(old.seconds, abs=1e-3)


# --- the dataset's index -------------------------------------------------------------------------


def meta(name: str, source: str = "collect") -> dict:
    return {
        "name": name,
        "label": name.split("_")[0],
        "created": "2026-11-24T10:00:00+00:00",
        "source": source,
    }


NAMES = [
    f"{d % 11 if d % 11 < 10 else 'none'}_20261124T1000{d:02d}000000_abcdef" for d in range(30)
]


def test_gallery_pages_newest_first_and_counts_in_one_query(engine):
    with db.writing(engine) as conn:
        for name in NAMES:
            records.index_drawing(conn, meta(name))
        assert records.mark_deleted(conn, NAMES[-1])
        assert not records.mark_deleted(conn, NAMES[-1])  # deleted already
        assert not records.mark_deleted(conn, "3_nothing_here")
    with db.reading(engine) as conn:
        items, total = gallery.gallery_page(conn, None, 1, 4)
        assert total == 29
        assert [i["name"] for i in items] == NAMES[-2:-6:-1]
        assert items[0] == meta(NAMES[-2])
        last, _ = gallery.gallery_page(conn, None, 8, 4)
        assert [i["name"] for i in last] == [NAMES[0]]
        threes, total = gallery.gallery_page(conn, "3", 1, 48)
        assert total == 3 and {i["label"] for i in threes} == {"3"}
        tally = records.counts(conn)
        assert records.is_deleted(conn, NAMES[-1]) and not records.is_deleted(conn, NAMES[0])
    assert list(tally) == LABELS
    assert sum(tally.values()) == 29 and tally["none"] == 2 and tally["7"] == 2


def test_a_drawing_written_again_stays_one_row_and_stays_deleted(engine):
    with db.writing(engine) as conn:
        records.index_drawing(conn, meta(NAMES[0]))
        records.mark_deleted(conn, NAMES[0])
        records.index_drawing(conn, meta(NAMES[0], source="correction"))
    rows = table_rows(engine, db.drawings)
    assert len(rows) == 1 and rows[0].deleted and rows[0].source == "correction"
    with db.reading(engine) as conn:  # counted once, and no longer once deleted
        assert sum(records.counts(conn).values()) == 0
    with db.writing(engine) as conn:
        records.index_drawing(conn, meta(NAMES[1]))
        records.index_drawing(conn, meta(NAMES[1], source="correction"))
        assert sum(records.counts(conn).values()) == 1
        records.recount(conn)
        assert sum(records.counts(conn).values()) == 1


def test_export_rows_come_in_chunks(engine):
    with db.writing(engine) as conn:
        for name in NAMES:
            records.index_drawing(conn, meta(name))
    with db.reading(engine) as conn:
        fetch = lambda after: records.drawing_rows(conn, after, 7)  # noqa: E731
        chunks = list(records.in_chunks(fetch, key=lambda row: row["name"]))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2]
    rows = sum(chunks, [])
    assert [row["name"] for row in rows] == sorted(NAMES)
    assert rows[0] == meta(rows[0]["name"])  # the index's fields: no metadata read needed


# --- the trainer's progress ----------------------------------------------------------------------


def test_pending_is_learnable_feedback_not_yet_dealt_with(engine):
    given = random_records(120, seed=5)
    record_all(engine, given)
    learnable = sorted(r["id"] for r in given if r["consent"] and r["digit"] is not None)
    with db.reading(engine) as conn:
        chunks = list(records.in_chunks(lambda after: records.pending(conn, "fnn", after, 10)))
        assert sum(chunks, []) == learnable and max(map(len, chunks)) == 10
        assert records.count_pending(conn, "fnn") == len(learnable)
    with db.writing(engine) as conn:
        assert records.mark(conn, "fnn", learnable[:5], "learned", "v1") == learnable[:5]
        assert records.mark(conn, "fnn", learnable[3:8], "rejected") == learnable[5:8]
    with db.reading(engine) as conn:
        assert records.pending(conn, "fnn") == learnable[8:]
        assert records.pending(conn, "cnn") == learnable  # each net has its own progress
        assert records.statuses(conn, "fnn", learnable[:9]) == (
            dict.fromkeys(learnable[:5], "learned") | dict.fromkeys(learnable[5:8], "rejected")
        )
        sample = records.learned_sample(conn, "fnn", 3)
        assert len(sample) == 3 and sample == sorted(set(sample) & set(learnable[:5]))
        assert set(records.learned_sample(conn, "fnn", 100)) == set(learnable[:5])
        held = records.held_out_ids(conn, 1000)
    assert held and set(held) <= set(learnable)
    assert held == sorted(i for i in learnable if records.feedback_held_out(i))


# --- concurrent writers: two processes -----------------------------------------------------------


def race_feedback(url: str, folder: str, given: list[dict], start: float) -> list[str]:
    """Answer every prediction, as one web worker would: the ids this process won."""
    import time

    engine, storage = db.make_engine(url), LocalStorage(folder)
    time.sleep(max(0.0, start - time.time()))
    won = []
    for record in given:
        try:
            feedback.commit_once(storage, engine, record)
            won.append(record["id"])
        except feedback.AlreadyAnswered:
            pass
    engine.dispose()
    return won


def race_trainer(url: str, name: str, start: float) -> list[str]:
    """Take what is pending, a few at a time, and mark it learned: the ids this trainer took."""
    import time

    engine = db.make_engine(url)
    time.sleep(max(0.0, start - time.time()))
    took = []
    while True:
        with db.writing(engine) as conn:
            chunk = records.pending(conn, "cnn", limit=3)
            if not chunk:
                break
            took += records.mark(conn, "cnn", chunk, "learned", version=name)
    engine.dispose()
    return took


@pytest.mark.slow
def test_two_processes_answering_the_same_predictions_win_once_each(engine, database_url, tmp_path):
    import time

    given = random_records(60, seed=7)
    start = time.time() + 1.5  # both processes are up by then
    folder = str(tmp_path / "storage")
    first, second = in_two_processes(
        race_feedback, (database_url, folder, given, start), (database_url, folder, given, start)
    )
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(r["id"] for r in given)
    assert len(table_rows(engine, db.feedback)) == 60
    assert sum(row.answers for row in table_rows(engine, db.feedback_tally)) == 120
    assert len(list(LocalStorage(folder).list("feedback/"))) == 60


@pytest.mark.slow
def test_two_trainers_never_take_one_sample_twice(engine, database_url):
    import time

    given = random_records(150, seed=9)
    record_all(engine, given)
    start = time.time() + 1.5
    first, second = in_two_processes(
        race_trainer, (database_url, "a", start), (database_url, "b", start)
    )
    assert not set(first) & set(second)
    learnable = {r["id"] for r in given if r["consent"] and r["digit"] is not None}
    assert set(first) | set(second) == learnable
    with db.reading(engine) as conn:
        versions = dict(
            conn.execute(
                sa.select(db.trainer_progress.c.prediction_id, db.trainer_progress.c.version)
            ).all()
        )
    assert {i for i, v in versions.items() if v == "a"} == set(first)


# --- a database that is down ---------------------------------------------------------------------


def test_a_database_that_is_down_is_unavailable(tmp_path):
    nobody = f"postgres://postgres@127.0.0.1:{free_port()}/digits"
    for url in (nobody, f"sqlite:///{tmp_path}/no/such/folder/records.sqlite3"):
        engine = db.make_engine(url)
        with pytest.raises(db.DatabaseUnavailable):
            records.add_feedback(engine, random_records(1)[0])
        with pytest.raises(db.DatabaseUnavailable), db.reading(engine) as conn:
            records.counts(conn)
