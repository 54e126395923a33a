"""Feedback on a prediction: the user says which digit it was (or that it was not a digit).

An answer is taken once, in any worker on any dyno, by two guarantees in turn (commit_once).
First `feedback/<prediction id>.json` is written to storage with a conditional put: the record
with everything the trainer needs (both nets' outputs, their versions, the user's digit, consent,
and the drawing itself only with consent), and what `flask db rebuild` makes the row again from;
a second answer's put is refused (409). Then a short transaction adds the prediction's feedback
row (its primary key: one per prediction) and the stats' tallies. So an answer is acknowledged
only once both hold it; a database or storage that fails first saves nothing (503), and the
database's write lock is never held while storage is written. After that, a consented drawing is
also saved into the dataset for people to browse; if that copy fails, the trainer's pass repairs
it (`backfill_dataset`).

Training never happens here: the trainer process finds records not yet learned and learns them.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from digits import dataset, db, predictions, records
from digits.bodies import BadInput, parse_label
from digits.nets import NETS
from digits.storage import NotFound, PreconditionFailed, Storage, StorageUnavailable

log = logging.getLogger(__name__)
PREFIX = "feedback/"


class UnknownPrediction(LookupError):
    """No prediction has this id."""


class AlreadyAnswered(Exception):
    """This prediction has already taken feedback."""


def key_of(prediction_id: str) -> str:
    return f"{PREFIX}{prediction_id}.json"


def parse_request(fields: dict) -> tuple[str, int | None, bool]:
    """(prediction id, digit or None for "not a digit", consent) or BadInput."""
    for name in ("id", "digit", "consent"):
        if name not in fields:
            raise BadInput(f"{name} is missing")
    prediction_id, digit, consent = fields["id"], fields["digit"], fields["consent"]
    if not isinstance(prediction_id, str) or not prediction_id:
        raise BadInput("id must be a prediction id")
    if not isinstance(consent, bool):
        raise BadInput("consent must be true or false")
    return prediction_id, None if digit is None else parse_label(digit), consent


# Predictions are saved by a background writer in the worker that made them; feedback landing
# on another worker can arrive first, so an unknown id is looked up again briefly before a 404.
# The writer takes a batch at least every WAKE_SECONDS (0.25 s): the waits add up to 0.64 s,
# enough for that and for the write itself.
RETRY_DELAYS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25)
# Only a batch opened this recently can still be on its way to storage, unless storage failed
# (then it waits in its writer's queue for storage to come back, longer than a wait here could
# cover); the margin also covers clocks of different dynos that disagree.
QUEUED_SECONDS = 10.0


def load_prediction(storage: Storage, prediction_id: str) -> dict:
    delays = RETRY_DELAYS if could_be_queued(prediction_id) else ()
    for delay in (*delays, None):
        try:
            return predictions.load(storage, prediction_id)
        except NotFound:
            if delay is None:
                break
            time.sleep(delay)
    raise UnknownPrediction(prediction_id)


def could_be_queued(prediction_id: str) -> bool:
    """Whether the record may still be in some worker's writer queue: a recent id of ours."""
    try:
        opened = predictions.opened_at(prediction_id)
    except ValueError:
        return False
    return abs((datetime.now(UTC) - opened).total_seconds()) < QUEUED_SECONDS


def source_of(digit: int | None, prediction: dict) -> str:
    """ "confirmation" when every net said the user's digit; "correction" otherwise."""
    said = {prediction[net]["digit"] for net in NETS}
    return "confirmation" if said == {digit} else "correction"


def build_record(prediction: dict, digit: int | None, consent: bool) -> dict:
    record = {
        "id": prediction["id"],
        "created": datetime.now(UTC).isoformat(),
        "digit": digit,
        "consent": consent,
        "source": source_of(digit, prediction),
        "prediction_created": prediction.get("created"),
        "versions": prediction.get("versions", {}),
        "correct": {net: prediction[net]["digit"] == digit for net in NETS},
    }
    for net in NETS:
        record[net] = {
            "digit": prediction[net]["digit"],
            "probabilities": prediction[net]["probabilities"],
        }
    if consent:
        record["image"] = prediction["image"]  # base64 PNG; kept only with consent
    return record


def record_feedback(storage: Storage, engine: Engine, fields: dict) -> dict:
    """Validate, commit the feedback once (record, then row), then keep the drawing if consented."""
    prediction_id, digit, consent = parse_request(fields)
    prediction = load_prediction(storage, prediction_id)
    if prediction.get("empty"):
        raise BadInput("an empty drawing cannot take feedback")
    record = build_record(prediction, digit, consent)
    commit_once(storage, engine, record)
    if consent:
        copy_to_dataset_later(storage, engine, record)
    return record


def commit_once(storage: Storage, engine: Engine, record: dict) -> None:
    """The answer, once: its JSON record by a conditional put (storage's own once-guarantee),
    then its row and tallies in a short transaction; AlreadyAnswered (409) if another answer
    holds either. No transaction is open during the put, so no write lock waits on storage.

    The put refused: another answer's record is there and is the one (adopt_stored_record).
    The row not added (the database fails, or the row is another answer's): the record is
    withdrawn before the error goes out, so nothing is saved. A crash between the put and the
    row leaves a record without a row, never acknowledged: the next answer to that prediction
    adopts it (and gets 409), as does `flask db rebuild`; the stats count it from then on.
    """
    if already_answered(engine, record["id"]):
        raise AlreadyAnswered(record["id"])  # a repeated answer: no put to refuse
    key = key_of(record["id"])
    try:
        storage.put(key, json.dumps(record).encode(), if_none_match=True)
    except PreconditionFailed:
        adopt_stored_record(storage, engine, record["id"])
        raise AlreadyAnswered(record["id"]) from None
    try:
        add_row(engine, record)
    except Exception:
        withdraw(storage, key)
        raise


def already_answered(engine: Engine, prediction_id: str) -> bool:
    with db.reading(engine) as conn:
        return records.has_feedback(conn, prediction_id)


def add_row(engine: Engine, record: dict) -> None:
    """The record's row and tallies; its row already there (adopted by a racing answer that
    lost in storage) is success, counted once; AlreadyAnswered if the row is another answer's."""
    try:
        db.write_or_confirm(
            engine,
            lambda: records.add_feedback(engine, record),
            lambda conn: records.holds_record(conn, record),
        )
    except records.AlreadyRecorded:
        raise AlreadyAnswered(record["id"]) from None


def withdraw(storage: Storage, key: str) -> None:
    """Delete a record whose row could not be added. If that fails too, the record stays as a
    crash would leave it (see commit_once): adopted by the next answer or a rebuild."""
    try:
        storage.delete(key)
    except Exception:
        log.warning("%s: not withdrawn after its row failed", key, exc_info=True)


def adopt_stored_record(storage: Storage, engine: Engine, prediction_id: str) -> None:
    """Storage holds an answer the database may lack: the record of a racing answer not yet
    in the database, one written before the database was rebuilt, or one of a try that crashed
    after its put. That stored answer is the one, so the row is made from it (counted once,
    whoever adds it first). A record withdrawn meanwhile (its writer's database failed) leaves
    no answer at all: a 503, nothing saved, try again."""
    try:
        stored = load(storage, prediction_id)
    except NotFound:
        raise StorageUnavailable(f"feedback {prediction_id}: another answer withdrawn") from None
    try:
        records.add_feedback(engine, stored)
    except records.AlreadyRecorded:
        pass  # the row holds another answer already: that one stands


# The dataset copy is for people browsing drawings; the durable feedback record above already
# holds the drawing, and the trainer learns from that. So the copy (two more durable writes,
# 10-100 ms on a busy disk or S3) runs after the answer, never making the user wait.
_copies: list[threading.Thread] = []
_copies_lock = threading.Lock()


def copy_to_dataset_later(storage: Storage, engine: Engine, record: dict) -> None:
    thread = threading.Thread(target=_copy, args=(storage, engine, record), daemon=True)
    with _copies_lock:
        _copies[:] = [t for t in _copies if t.is_alive()] + [thread]
    thread.start()


def _copy(storage: Storage, engine: Engine, record: dict) -> None:
    try:
        copy_to_dataset(storage, engine, record)
    except Exception:
        # Nothing is lost: the record holds the drawing, and backfill_dataset copies it.
        log.exception("feedback %s: drawing not copied to the dataset yet", record["id"])


def flush(timeout: float = 10.0) -> None:
    """Wait for dataset copies in flight (tests, and before a process exits)."""
    with _copies_lock:
        pending = list(_copies)
    for thread in pending:
        thread.join(timeout)


atexit.register(flush, 5.0)  # a worker stopping gracefully finishes its copies first


def dataset_label(record: dict) -> str:
    return "none" if record["digit"] is None else str(record["digit"])


def dataset_name(record: dict) -> str:
    """The drawing's name in the dataset: the same for every copy of one record."""
    return dataset.name_for_prediction(dataset_label(record), record["id"])


def copy_to_dataset(storage: Storage, engine: Engine, record: dict) -> str:
    """The drawing into the dataset and its index, then the copy's marker (which tells a rebuild
    that a drawing missing from the dataset later was deleted by an admin)."""
    name = save_to_dataset(storage, record, on_saved=records.indexer(engine))
    mark_copied(storage, record["id"], name)
    return name


def save_to_dataset(
    storage: Storage, record: dict, on_saved: Callable[[dict], None] | None = None
) -> str:
    """Safe to repeat or race: a given name is written without a condition, so another copy
    rewrites the same two keys (same PNG; only the metadata's "created" moves) and never fails
    on them or adds a second sample."""
    name = dataset_name(record)
    extra = {
        "prediction_id": record["id"],
        "versions": record["versions"],
        "fnn": record["fnn"],
        "cnn": record["cnn"],
    }
    png = base64.b64decode(record["image"])
    label = dataset_label(record)
    return dataset.save_drawing(
        storage, png, label, record["source"], extra, name=name, on_saved=on_saved
    )


# --- repairing the dataset ---------------------------------------------------------------

# A finished copy leaves a marker: `flask db rebuild` tells by it a drawing an admin deleted
# (marker, no metadata) from one never copied. The database's index says it at once: a deleted
# drawing keeps its row.
COPIED = "dataset-copies/"


def copied_key(prediction_id: str) -> str:
    return f"{COPIED}{prediction_id}.json"


def mark_copied(storage: Storage, prediction_id: str, name: str) -> None:
    body = {"name": name, "at": datetime.now(UTC).isoformat()}
    storage.put(copied_key(prediction_id), json.dumps(body).encode())


def backfill_dataset(storage: Storage, engine: Engine, limit: int = records.CHUNK) -> int:
    """Copy consented drawings whose dataset copy failed or was cut short; return how many.

    The database knows which have no row in the dataset's index, so a pass with nothing to
    repair is one query, and one with something reads only those records (at most `limit`).
    Copying again is safe: the same name, the same PNG, and a half-written copy is completed.
    """
    with db.reading(engine) as conn:
        missing = records.uncopied(conn, limit)
    made = 0
    for prediction_id in missing:
        try:
            name = copy_to_dataset(storage, engine, load(storage, prediction_id))
        except Exception:  # one bad record must not stop the others, or the trainer
            log.exception("feedback %s: dataset copy failed again; next pass", prediction_id)
            continue
        log.info("feedback %s: drawing %s copied by the backfill", prediction_id, name)
        made += 1
    return made


def ids(storage: Storage) -> list[str]:
    """Prediction ids that took feedback, in key order."""
    return [
        key[len(PREFIX) : -len(".json")] for key in storage.list(PREFIX) if key.endswith(".json")
    ]


def load(storage: Storage, prediction_id: str) -> dict:
    return json.loads(storage.get(key_of(prediction_id)).data)
