"""`flask db rebuild`: make the records again from storage alone.

Storage keeps everything the records say, so an existing deployment can move onto the database
and a lost database can be made again:
- feedback from its JSON records (`feedback/<id>.json`), and the stats' tallies from those;
- the dataset's index from each drawing's metadata (`drawings/<label>/<name>.json`), plus the
  feedback drawings an admin deleted (a copy marker under `dataset-copies/` and no metadata);
- the trainer's progress from its markers (`trainer/<net>/<id>.json`);
- the model versions' cards from each version's metrics.json, pinned where `pinned.json` is.

It replaces what the tables held, in one transaction: a rebuild that fails changes nothing.
Reads go READERS at a time (dataset.read_each), and rows are written a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from digits import dataset, db, feedback, lifecycle, progress, records
from digits.nets import NETS
from digits.storage import Storage


@dataclass
class Rebuilt:
    drawings: int = 0
    deleted: int = 0
    feedback: int = 0
    progress: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def rebuild(storage: Storage, engine: Engine, say: Callable[[str], None] = print) -> Rebuilt:
    done = Rebuilt()
    with db.writing(engine) as conn:
        tables = (db.feedback_tally, db.trainer_progress, db.feedback, db.drawing_counts)
        for table in (*tables, db.drawings, db.model_versions):
            conn.execute(table.delete())
        copied: dict[str, str] = {}
        done.feedback = insert_all(conn, db.feedback, feedback_rows(storage, copied))
        records.retally(conn)
        say(f"feedback: {done.feedback}")
        done.drawings = insert_all(conn, db.drawings, drawing_rows(storage))
        say(f"drawings: {done.drawings}")
        done.deleted = insert_all(conn, db.drawings, deleted_rows(storage, copied))
        say(f"feedback drawings an admin deleted: {done.deleted}")
        records.recount(conn)
        for net in NETS:
            done.progress[net] = insert_all(conn, db.trainer_progress, progress_rows(storage, net))
            say(f"trainer progress, {net}: {done.progress[net]}")
        for net in NETS:
            done.versions[net] = insert_all(conn, db.model_versions, version_rows(storage, net))
            say(f"model versions, {net}: {done.versions[net]}")
    return done


def insert_all(conn: Connection, table, rows: Iterable[dict]) -> int:
    count, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) == records.CHUNK:
            conn.execute(table.insert(), chunk)
            count, chunk = count + len(chunk), []
    if chunk:
        conn.execute(table.insert(), chunk)
    return count + len(chunk)


def drawing_rows(storage: Storage) -> Iterator[dict]:
    for meta in dataset.iter_metadata(storage, dataset.names(storage)):
        yield records.drawing_row(meta)


def feedback_rows(storage: Storage, copied: dict[str, str]) -> Iterator[dict]:
    """Rows of every feedback record; `copied` gets the dataset name and prediction id of each
    drawing that was copied into the dataset (it has a copy marker)."""
    markers = set(storage.list(feedback.COPIED))
    ids = feedback.ids(storage)
    for record in dataset.read_each(ids, lambda i: feedback.load(storage, i)):
        if feedback.copied_key(record["id"]) in markers:
            copied[feedback.dataset_name(record)] = record["id"]
        yield records.feedback_row(record)


def deleted_rows(storage: Storage, copied: dict[str, str]) -> Iterator[dict]:
    """A feedback drawing copied once and gone now was deleted by an admin: its row says so,
    so the trainer's repair does not copy it back."""
    shown = set(dataset.names(storage))
    for name, prediction_id in copied.items():
        if name not in shown:
            row = records.drawing_row({"name": name, "label": dataset.label_of(name)})
            yield row | {"prediction_id": prediction_id, "deleted": True}


def progress_rows(storage: Storage, net: str) -> Iterator[dict]:
    prefix = f"{progress.MARKERS}{net}/"
    ids = [k[len(prefix) : -len(".json")] for k in storage.list(prefix) if k.endswith(".json")]

    def read(prediction_id: str) -> dict:
        body = json.loads(storage.get(f"{prefix}{prediction_id}.json").data)
        return {
            "net": net,
            "prediction_id": prediction_id,
            "status": body["status"],
            "version": body.get("version"),
            "at": body["at"],
        }

    yield from dataset.read_each(ids, read)


def version_rows(storage: Storage, net: str) -> Iterator[dict]:
    listing = lifecycle.Listing.of(storage, net)

    def read(version: str) -> dict:
        card = lifecycle.read_card(storage, net, version)
        return lifecycle.card_row(net, card, pinned=version in listing.pinned)

    yield from dataset.read_each(listing.complete, read)
