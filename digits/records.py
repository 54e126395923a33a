"""The queries the app makes of the records database (tables in digits/db.py).

Most functions take a connection from `db.reading` or `db.writing`, so a caller decides what
one transaction holds. Those that follow a write to storage (`add_feedback`, `indexer`) open
their own short one: a blob is written before its row, never inside the transaction, so
SQLite's one write lock is never held across a storage call. Nothing here reads storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from digits import db
from digits.dataset import LABELS
from digits.holdout import feedback_held_out
from digits.nets import NETS

T = TypeVar("T")

NOT_A_DIGIT = -1  # the tallies' "truth" for "not a digit"
CHUNK = 500  # the trainer's ids per query: its memory must not grow with the backlog


class AlreadyRecorded(Exception):
    """This prediction already has a feedback row."""


def insert(conn: Connection, table: sa.Table):
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


# --- feedback ----------------------------------------------------------------------------------


def feedback_row(record: dict) -> dict:
    """The feedback record (digits/feedback.py's JSON) as a row."""
    created = record["created"]
    versions = record.get("versions") or {}
    row = {
        "prediction_id": record["id"],
        "created": created,
        "created_at": datetime.fromisoformat(created).timestamp(),
        "day": created[:10],
        "digit": record["digit"],
        "consent": bool(record["consent"]),
        "has_image": bool(record.get("image")),
        "held_out": feedback_held_out(record["id"]),
        "source": record["source"],
    }
    for net in NETS:
        row[f"{net}_digit"] = record[net]["digit"]
        row[f"{net}_version"] = versions.get(net, "original")
    return row


def add_feedback(engine: Engine, record: dict) -> None:
    """The record's feedback row and its tallies, in one short transaction (no storage in it).

    The row's primary key keeps the answer once: AlreadyRecorded if the prediction's row holds
    another answer. Finding this very record's row there already is done, counted once: a
    second answer that lost the race in storage adopted the winner's record first
    (digits/feedback.py). On PostgreSQL an insert waits for another one's open transaction.
    """
    row = feedback_row(record)
    with db.writing(engine) as conn:
        if _inserted(conn, db.feedback, row):
            add_tallies(conn, [row])
        elif not holds_record(conn, record):
            raise AlreadyRecorded(record["id"])


def holds_record(conn: Connection, record: dict) -> bool:
    """Whether the prediction's feedback row is this record's (the same answer, not another)."""
    return feedback_row_of(conn, record["id"]) == feedback_row(record)


def feedback_row_of(conn: Connection, prediction_id: str) -> dict | None:
    f = db.feedback
    found = conn.execute(sa.select(f).where(f.c.prediction_id == prediction_id)).first()
    return found._asdict() if found else None


def _inserted(conn: Connection, table: sa.Table, row: dict) -> bool:
    """Insert the row unless its primary key is taken; whether it was."""
    added = insert(conn, table).values(row).on_conflict_do_nothing()
    return conn.execute(added.returning(*table.primary_key.columns)).first() is not None


def add_tallies(conn: Connection, rows: list[dict]) -> None:
    """Count rows into the stats' tallies (rows with distinct tally keys per net, or one row)."""
    for net in NETS:
        for row in rows:
            _add_tally(conn, tally_row(row, net))


def tally_row(row: dict, net: str) -> dict:
    truth = NOT_A_DIGIT if row["digit"] is None else row["digit"]
    return {
        "day": row["day"],
        "net": net,
        "version": row[f"{net}_version"],
        "truth": truth,
        "said": row[f"{net}_digit"],
        "answers": 1,
        "seconds": row["created_at"],
    }


def _add_tally(conn: Connection, values: dict) -> None:
    t = db.feedback_tally
    statement = insert(conn, t).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[t.c.day, t.c.net, t.c.version, t.c.truth, t.c.said],
        set_={
            "answers": t.c.answers + statement.excluded.answers,
            "seconds": t.c.seconds + statement.excluded.seconds,
        },
    )
    conn.execute(statement)


def retally(conn: Connection) -> None:
    """Make the tallies again from the feedback rows (after a rebuild)."""
    conn.execute(db.feedback_tally.delete())
    f = db.feedback
    truth = sa.case((f.c.digit.is_(None), NOT_A_DIGIT), else_=f.c.digit)
    for net in NETS:
        version, said = f.c[f"{net}_version"], f.c[f"{net}_digit"]
        grouped = sa.select(
            f.c.day,
            sa.literal(net),
            version,
            truth,
            said,
            sa.func.count(),
            sa.func.sum(f.c.created_at),
        ).group_by(f.c.day, version, truth, said)
        columns = ["day", "net", "version", "truth", "said", "answers", "seconds"]
        conn.execute(db.feedback_tally.insert().from_select(columns, grouped))


def has_feedback(conn: Connection, prediction_id: str) -> bool:
    found = sa.select(db.feedback.c.prediction_id).where(
        db.feedback.c.prediction_id == prediction_id
    )
    return conn.execute(found).first() is not None


# --- stats -------------------------------------------------------------------------------------


def tally(correct: int, total: int) -> dict:
    return {"correct": correct, "total": total, "accuracy": correct / total if total else None}


def mean_time(timestamp: float) -> str:
    return datetime.fromtimestamp(round(timestamp), UTC).isoformat()


def accuracy_stats(conn: Connection) -> dict:
    """What /api/stats says of the answers (totals, timeline, per_digit, confusion), from the
    tallies: two small grouped queries, whatever the number of answers."""
    t = db.feedback_tally
    pairs = conn.execute(
        sa.select(t.c.net, t.c.truth, t.c.said, sa.func.sum(t.c.answers)).group_by(
            t.c.net, t.c.truth, t.c.said
        )
    ).all()
    confusion = {net: [[0] * 10 for _ in range(10)] for net in NETS}
    answers = 0
    for net, truth, said, count in pairs:
        answers += count if net == NETS[0] else 0  # every answer has a row per net
        if truth != NOT_A_DIGIT:
            confusion[net][truth][said] += int(count)
    return {
        "totals": {"feedback": int(answers)} | {net: totals(confusion[net]) for net in NETS},
        "timeline": timeline(conn),
        "per_digit": {net: per_digit(confusion[net]) for net in NETS},
        "confusion": confusion,
    }


def totals(matrix: list[list[int]]) -> dict:
    return tally(sum(matrix[d][d] for d in range(10)), sum(map(sum, matrix)))


def per_digit(matrix: list[list[int]]) -> list[float | None]:
    """Recall per true digit: of the drawings that were d, the share the net called d."""
    return [matrix[d][d] / sum(matrix[d]) if sum(matrix[d]) else None for d in range(10)]


def timeline(conn: Connection) -> list[dict]:
    """One point per day, net and serving version, oldest first; `time` is the mean time of
    the point's answers, so versions of one day get their own places on a time axis."""
    t = db.feedback_tally
    right = sa.func.sum(sa.case((t.c.truth == t.c.said, t.c.answers), else_=0))
    points = conn.execute(
        sa.select(
            t.c.day, t.c.net, t.c.version, right, sa.func.sum(t.c.answers), sa.func.sum(t.c.seconds)
        )
        .where(t.c.truth != NOT_A_DIGIT)
        .group_by(t.c.day, t.c.net, t.c.version)
    ).all()
    return [
        {"date": day, "time": mean_time(seconds / total), "net": net, "version": version}
        | tally(int(correct), int(total))
        for day, net, version, correct, total, seconds in sorted(points, key=lambda p: p[:3])
    ]


# --- the dataset's index -----------------------------------------------------------------------


def drawing_row(meta: dict) -> dict:
    """A drawing's metadata (digits/dataset.py's JSON) as an index row."""
    name = meta["name"]
    return {
        "name": name,
        "label": meta["label"],
        "sort_key": name.split("_", 1)[1],
        "created": meta.get("created"),
        "source": meta.get("source"),
        "prediction_id": meta.get("prediction_id"),
    }


def index_drawing(conn: Connection, meta: dict) -> None:
    """Add a drawing and count it, or refresh one written again under its name (a repeated
    copy, counted once). A row an admin deleted stays deleted."""
    row, d = drawing_row(meta), db.drawings
    if _inserted(conn, d, row):
        _add_count(conn, row["label"], 1)
        return
    refreshed = {"created": row["created"], "source": row["source"]}
    conn.execute(d.update().where(d.c.name == row["name"]).values(refreshed))


def indexer(engine: Engine) -> Callable[[dict], None]:
    """dataset.save_drawing's `on_saved`, once both blobs are in storage: the drawing's row in
    its own short transaction. DatabaseUnavailable only when the row surely did not land, for
    save_drawing to withdraw the blobs of a new drawing."""

    def index(meta: dict) -> None:
        db.write_or_confirm(
            engine,
            lambda: _index_alone(engine, meta),
            lambda conn: is_indexed(conn, meta["name"]),
        )

    return index


def _index_alone(engine: Engine, meta: dict) -> None:
    with db.writing(engine) as conn:
        index_drawing(conn, meta)


def is_indexed(conn: Connection, name: str) -> bool:
    d = db.drawings
    return conn.execute(sa.select(d.c.name).where(d.c.name == name)).first() is not None


def mark_deleted(conn: Connection, name: str) -> bool:
    """Whether the drawing was in the index and is now marked deleted (and no longer counted)."""
    d = db.drawings
    done = conn.execute(
        d.update()
        .where(d.c.name == name, d.c.deleted.is_(False))
        .values(deleted=True)
        .returning(d.c.label)
    ).first()
    if done is None:
        return False
    _add_count(conn, done.label, -1)
    return True


def _add_count(conn: Connection, label: str, change: int) -> None:
    c = db.drawing_counts
    statement = insert(conn, c).values(label=label, drawings=change)
    statement = statement.on_conflict_do_update(
        index_elements=[c.c.label], set_={"drawings": c.c.drawings + statement.excluded.drawings}
    )
    conn.execute(statement)


def recount(conn: Connection) -> None:
    """Count the drawings per label again from the index (after a rebuild)."""
    d, c = db.drawings, db.drawing_counts
    conn.execute(c.delete())
    shown = sa.select(d.c.label, sa.func.count()).where(d.c.deleted.is_(False)).group_by(d.c.label)
    conn.execute(c.insert().from_select(["label", "drawings"], shown))


def is_deleted(conn: Connection, name: str) -> bool:
    d = db.drawings
    found = conn.execute(sa.select(d.c.deleted).where(d.c.name == name)).first()
    return bool(found and found.deleted)


def counts(conn: Connection) -> dict[str, int]:
    """Drawings per label (every label, 0 when none): eleven rows at most, kept as drawings
    are added and deleted."""
    tally_by_label = {label: 0 for label in LABELS}
    for label, count in conn.execute(sa.select(db.drawing_counts)):
        if label in tally_by_label:
            tally_by_label[label] = int(count)
    return tally_by_label


def shown_count(conn: Connection, label: str | None = None) -> int:
    """How many drawings are shown under `label`, or under every label (None)."""
    tally = counts(conn)
    return tally[label] if label else sum(tally.values())


def drawing_rows(conn: Connection, after: str = "", limit: int = CHUNK) -> list[dict]:
    """The shown drawings after the name `after`, in name order, as the index has them (name,
    label, source, created): an export's next chunk, whose metadata need not be read again."""
    d = db.drawings
    chosen = (
        sa.select(d.c.name, d.c.label, d.c.source, d.c.created)
        .where(d.c.deleted.is_(False), d.c.name > after)
        .order_by(d.c.name)
        .limit(limit)
    )
    return [row._asdict() for row in conn.execute(chosen)]


# --- the trainer's progress --------------------------------------------------------------------


def learnable():
    """Feedback the trainer may learn or evaluate on: consented, with a digit and a drawing."""
    f = db.feedback
    return sa.and_(f.c.consent.is_(True), f.c.has_image.is_(True), f.c.digit.is_not(None))


def not_done(net: str):
    p = db.trainer_progress
    return ~sa.exists().where(p.c.net == net, p.c.prediction_id == db.feedback.c.prediction_id)


def pending(conn: Connection, net: str, after: str = "", limit: int = CHUNK) -> list[str]:
    """Ids of learnable feedback this net has not dealt with, after `after`, in id order: the
    trainer asks for what is new a chunk at a time."""
    f = db.feedback
    chosen = (
        sa.select(f.c.prediction_id)
        .where(learnable(), not_done(net), f.c.prediction_id > after)
        .order_by(f.c.prediction_id)
        .limit(limit)
    )
    return list(conn.execute(chosen).scalars())


def count_pending(conn: Connection, net: str) -> int:
    f = db.feedback
    counted = sa.select(sa.func.count()).select_from(f).where(learnable(), not_done(net))
    return int(conn.execute(counted).scalar_one())


def mark(
    conn: Connection,
    net: str,
    ids: list[str],
    status: str,
    version: str | None = None,
    at: str | None = None,
) -> list[str]:
    """Record the net's progress on these samples; return the ids marked now. An id already
    marked keeps its first status: of two trainers marking one sample, one wins. `at` is the
    time the storage markers carry, so a rebuild gives the same rows."""
    at = at or datetime.now(UTC).isoformat()
    marked = []
    for start in range(0, len(ids), CHUNK):
        rows = [
            {"net": net, "prediction_id": i, "status": status, "version": version, "at": at}
            for i in dict.fromkeys(ids[start : start + CHUNK])
        ]
        p = db.trainer_progress
        statement = insert(conn, p).values(rows).on_conflict_do_nothing()
        marked += conn.execute(statement.returning(p.c.prediction_id)).scalars()
    return marked


def statuses(conn: Connection, net: str, ids: list[str]) -> dict[str, str]:
    """Prediction id -> this net's status, for those of `ids` it has dealt with."""
    p = db.trainer_progress
    out = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found = sa.select(p.c.prediction_id, p.c.status).where(
            p.c.net == net, p.c.prediction_id.in_(chunk)
        )
        out.update(conn.execute(found).all())
    return out


def learned_sample(conn: Connection, net: str, limit: int) -> list[str]:
    """Up to `limit` ids this net learned, picked at random: the replay of earlier drawings."""
    p = db.trainer_progress
    picked = (
        sa.select(p.c.prediction_id)
        .where(p.c.net == net, p.c.status == "learned")
        .order_by(sa.func.random())
        .limit(limit)
    )
    return sorted(conn.execute(picked).scalars())


def held_out_ids(conn: Connection, limit: int) -> list[str]:
    """The newest `limit` held-out learnable ids: the user drawings a candidate is judged on."""
    f = db.feedback
    chosen = (
        sa.select(f.c.prediction_id)
        .where(learnable(), f.c.held_out.is_(True))
        .order_by(f.c.prediction_id.desc())
        .limit(limit)
    )
    return sorted(conn.execute(chosen).scalars())


def uncopied(conn: Connection, limit: int = CHUNK) -> list[str]:
    """Ids of consented feedback with a drawing that has no row in the dataset's index (a
    deleted one keeps its row): the dataset copies to make again."""
    f, d = db.feedback, db.drawings
    missing = ~sa.exists().where(d.c.prediction_id == f.c.prediction_id)
    chosen = (
        sa.select(f.c.prediction_id)
        .where(f.c.consent.is_(True), f.c.has_image.is_(True), missing)
        .order_by(f.c.prediction_id)
        .limit(limit)
    )
    return list(conn.execute(chosen).scalars())


def in_chunks(fetch: Callable[[str], list[T]], key: Callable[[T], str] = str) -> Iterator[list[T]]:
    """Each chunk `fetch(after)` gives, keyset-paged by its last item's key, until one comes
    back empty."""
    after = ""
    while chunk := fetch(after):
        yield chunk
        after = key(chunk[-1])


def pending_summary(conn: Connection, net: str) -> tuple[int, float | None]:
    """How many learnable samples this net has not dealt with, not counting held-out ones (never
    trained on), and when the oldest of them was answered (seconds since the epoch)."""
    f = db.feedback
    summary = sa.select(sa.func.count(), sa.func.min(f.c.created_at)).where(
        learnable(), not_done(net), f.c.held_out.is_(False)
    )
    count, oldest = conn.execute(summary).one()
    return int(count), oldest


# --- model versions ----------------------------------------------------------------------------


def add_version(conn: Connection, row: dict) -> None:
    """Add a version's card, or refresh it; a pin stays as it was unless the row says."""
    v = db.model_versions
    statement = insert(conn, v).values(row)
    refreshed = {"created": statement.excluded.created, "card": statement.excluded.card}
    if "pinned" in row:
        refreshed["pinned"] = statement.excluded.pinned
    conn.execute(
        statement.on_conflict_do_update(index_elements=[v.c.net, v.c.version], set_=refreshed)
    )


def remove_versions(conn: Connection, net: str, versions: list[str]) -> None:
    v = db.model_versions
    if versions:
        conn.execute(v.delete().where(v.c.net == net, v.c.version.in_(versions)))


def version_rows(
    conn: Connection, net: str, newest: int | None = None, also: tuple[str, ...] = ()
) -> list[dict]:
    """The net's version rows, oldest first: the `newest` ones (every one when None), plus the
    pinned ones and those named in `also` (the one served). At most newest + pins + also."""
    v = db.model_versions
    latest = sa.select(v.c.version).where(v.c.net == net).order_by(v.c.version.desc())
    if newest is not None:
        latest = latest.limit(newest)
    wanted = sa.or_(v.c.version.in_(latest.scalar_subquery()), v.c.pinned, v.c.version.in_(also))
    chosen = sa.select(v).where(v.c.net == net, wanted).order_by(v.c.version)
    return [row._asdict() for row in conn.execute(chosen)]


def version_row(conn: Connection, net: str, version: str) -> dict | None:
    v = db.model_versions
    found = conn.execute(sa.select(v).where(v.c.net == net, v.c.version == version)).first()
    return found._asdict() if found else None


def version_names(conn: Connection, net: str, pinned_only: bool = False) -> set[str]:
    v = db.model_versions
    chosen = sa.select(v.c.version).where(v.c.net == net)
    if pinned_only:
        chosen = chosen.where(v.c.pinned)
    return set(conn.execute(chosen).scalars())
