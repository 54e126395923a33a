"""`flask db rebuild`: the records made again from storage alone, on each storage and database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from flask import Flask

from digits import dataset, db, feedback, gallery, rebuild, records
from digits.cli_db import db_group
from digits.nets import NETS
from digits.storage import LocalStorage
from tests.helpers import drawing_png, free_port, random_records, reference_stats, table_rows

TABLES = (db.feedback, db.feedback_tally, db.drawings, db.drawing_counts, db.trainer_progress)


def write_marker(storage, net: str, prediction_id: str, status: str, version=None) -> str:
    """A trainer marker as digits/learner.py writes it; returns its time."""
    at = datetime.now(UTC).isoformat()
    body = {"status": status, "at": at} | ({"version": version} if version else {})
    storage.put(f"trainer/{net}/{prediction_id}.json", json.dumps(body).encode())
    return at


def fill_storage(storage, engine=None) -> list[dict]:
    """Feedback (drawings copied into the dataset with consent), drawings saved through /hook,
    an admin's delete, and the trainer's markers, written as the app writes them. With an
    engine, the records are written too, as they are with the database in the path."""
    given = random_records(40, seed=11)
    for record in given:
        key, body = feedback.key_of(record["id"]), json.dumps(record).encode()
        if engine is None:
            storage.put(key, body, if_none_match=True)
        else:
            feedback.commit_once(storage, engine, record)
        if record["consent"]:
            name = feedback.save_to_dataset(storage, record)
            feedback.mark_copied(storage, record["id"], name)
            index(storage, engine, name)
    for digit in (1, 4, 4):
        index(storage, engine, dataset.save_drawing(storage, drawing_png(), str(digit), "collect"))
    gone = feedback.dataset_name(next(r for r in given if r["consent"]))
    dataset.delete(storage, gone)
    if engine is not None:
        with db.writing(engine) as conn:
            records.mark_deleted(conn, gone)
    learnable = [r["id"] for r in given if r["consent"] and r["digit"] is not None]
    for net, ids in (("fnn", learnable[:6]), ("cnn", learnable[2:5])):
        for i, prediction_id in enumerate(ids):
            status, version = ("learned", "v1") if i % 3 else ("held_out", None)
            at = write_marker(storage, net, prediction_id, status, version)
            if engine is not None:
                with db.writing(engine) as conn:
                    records.mark(conn, net, [prediction_id], status, version, at)
    return given


def index(storage, engine, name: str) -> None:
    if engine is not None:
        with db.writing(engine) as conn:
            records.index_drawing(conn, dataset.metadata(storage, name))


def dump(engine) -> dict:
    out = {table.name: table_rows(engine, table) for table in TABLES}
    # Sums of answer times: added in another order, they may differ in the last bits.
    out["feedback_tally"] = [(*row[:-1], round(row[-1], 3)) for row in out["feedback_tally"]]
    # A deleted drawing's metadata is gone from storage, and its time and source with it.
    out["drawings"] = [
        (row.name, row.label, row.sort_key, row.prediction_id) if row.deleted else row
        for row in out["drawings"]
    ]
    return out


def test_a_lost_database_is_rebuilt_equal_to_the_original(store, engine, database_url):
    fill_storage(store, engine)
    original = dump(engine)
    assert all(original.values())
    with db.writing(engine) as conn:  # lost: every row gone
        for table in TABLES:
            conn.execute(table.delete())
    done = rebuild.rebuild(store, engine, say=lambda line: None)
    assert (done.feedback, done.drawings, done.deleted) == (40, len(original["drawings"]) - 1, 1)
    assert dump(engine) == original


def test_an_existing_deployment_moves_onto_the_database(store, engine):
    """Storage written before the database existed: the records answer what storage did."""
    given = fill_storage(store)
    rebuild.rebuild(store, engine, say=lambda line: None)
    with db.reading(engine) as conn:
        answer = records.accuracy_stats(conn)
        tally = records.counts(conn)
        page, total = gallery.gallery_page(conn, None, 1, 48)
        pending = {net: records.pending(conn, net) for net in NETS}
    every = [feedback.load(store, i) for i in feedback.ids(store)]
    assert answer == reference_stats(every)
    assert tally == dataset.counts(store)
    names = dataset.newest_first(dataset.names(store))
    assert total == len(names) and [item["name"] for item in page] == names[:48]
    assert page[0] == {
        key: dataset.metadata(store, names[0])[key]
        for key in ("name", "label", "created", "source")
    }
    learnable = sorted(r["id"] for r in given if r["consent"] and r["digit"] is not None)
    assert pending["fnn"] == learnable[6:]
    assert pending["cnn"] == learnable[:2] + learnable[5:]


def test_the_rebuild_command_replaces_the_records(tmp_path, database_url):
    storage = LocalStorage(tmp_path / "storage")
    fill_storage(storage)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["DATABASE_URL"] = database_url
    app.extensions["storage"] = storage
    db.init_app(app)
    app.cli.add_command(db_group)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "at revision" in result.output and db.head() in result.output
    assert runner.invoke(args=["db", "rebuild"], input="n\n").exit_code == 1  # asked, refused
    assert table_rows(db.engine_of(app), db.feedback) == []
    result = runner.invoke(args=["db", "rebuild", "--yes"])
    assert result.exit_code == 0, result.output
    assert "feedback: 40" in result.output and "rebuilt" in result.output
    with db.reading(db.engine_of(app)) as conn:
        assert sum(records.counts(conn).values()) == sum(dataset.counts(storage).values())
        assert conn.execute(sa.select(sa.func.count()).select_from(db.feedback)).scalar() == 40


def test_commands_say_when_the_database_is_down(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{free_port()}/digits"
    app.extensions["storage"] = LocalStorage(tmp_path / "storage")
    db.init_app(app)
    app.cli.add_command(db_group)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 1
    assert "Error: storage is unavailable: database unavailable" in result.output


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/instance/digits.sqlite3", None])
def test_the_embedded_database_needs_no_setting(tmp_path, monkeypatch, url):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    if url:
        app.config["DATABASE_URL"] = url.format(tmp=tmp_path)
    db.init_app(app)
    assert (tmp_path / "instance" / "digits.sqlite3").exists()
    assert db.revision(db.engine_of(app)) == db.head()
