"""Which model versions are kept, and the cards the pages read from the database.

    models/<net>/<version>/pinned.json   an admin's pin: never pruned (also the row's `pinned`)

Per net, `prune` keeps "original" (the shipped files in MODELS_DIR, never in storage), the
version the pointer names, the newest KEEP_VERSIONS and every pinned one; it deletes the rest
from storage and from `model_versions`. A version exists once its metrics.json does, so that file
goes first (registry.discard): a delete cut short leaves files no one lists, which a later prune
clears. The pointer and the pin are read again right before each delete, so a rollback or a pin
made meanwhile keeps its version; one that lands just after the delete finds the version gone
and undoes itself (registry.delete_unserved, registry.rollback, `pin`).

The rows (digits/db.py `model_versions`) are what the Stats and Models pages and `flask models
list` read: a few rows, never every metrics.json. Storage stays the truth: `record` adds a row
after a publish, each prune adds the rows missing for the versions it keeps (a deployment that
had versions before the table), and `flask db rebuild` makes them all again.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from digits import dataset, db, records, registry
from digits.nets import NETS
from digits.storage import NotFound, Storage

PIN = "pinned.json"
# A version folder without metrics.json is a publish in progress, or one cut short (a crash, or
# a delete that stopped after metrics.json); past this age it is the latter, and is cleared.
LEFTOVER_AFTER = timedelta(hours=1)


# --- the cards in the database ------------------------------------------------------------


def card_row(net: str, card: dict, pinned: bool | None = None) -> dict:
    """A version's row; the ids it learned can run to thousands and are not for the pages."""
    shown = {k: v for k, v in card.items() if k != "feedback_ids"}
    row = {"net": net, "version": card["version"], "created": card.get("created")}
    row["card"] = json.dumps(shown)
    return row if pinned is None else row | {"pinned": pinned}


def read_card(storage: Storage, net: str, version: str) -> dict:
    """The version's metrics.json (NotFound for a version that is not, or no longer, there)."""
    card = json.loads(storage.get(registry.version_key(net, version, "metrics.json")).data)
    return {**card, "version": version}


def record(storage: Storage, engine: Engine, net: str, version: str) -> None:
    """The published version's row, from its metrics.json (its pin, if any, stays)."""
    row = card_row(net, read_card(storage, net, version))
    with db.writing(engine) as conn:
        records.add_version(conn, row)


def entry(row: dict, served: str) -> dict:
    """A row as registry.metrics' callers see a version: its card, time, pin, and if it serves."""
    return {
        "version": row["version"],
        "created": row["created"],
        "metrics": json.loads(row["card"]),
        "pinned": bool(row.get("pinned")),
        "current": row["version"] == served,
    }


def listed(
    storage: Storage, engine: Engine, models_dir: str, newest: int | None
) -> dict[str, list[dict]]:
    """Per net, oldest first: "original", the `newest` versions (all when None), the pinned
    ones and the one served. One pointer read and one query per net; a metrics.json is read
    only for a served version that has no row yet (a publish the trainer has not recorded)."""
    served = registry.current(storage)
    with db.reading(engine) as conn:
        rows = {net: records.version_rows(conn, net, newest, (served[net],)) for net in NETS}
    return {
        net: [original_entry(storage, models_dir, net, served[net])]
        + [entry(row, served[net]) for row in with_served(storage, net, rows[net], served[net])]
        for net in NETS
    }


def original_entry(storage: Storage, models_dir: str, net: str, served: str) -> dict:
    card = registry.metrics(storage, models_dir, net, registry.ORIGINAL)  # MODELS_DIR's file
    return {
        "version": registry.ORIGINAL,
        "created": card.get("created"),
        "metrics": card,
        "pinned": False,  # kept without a pin: it ships with the app
        "current": served == registry.ORIGINAL,
    }


def with_served(storage: Storage, net: str, rows: list[dict], served: str) -> list[dict]:
    if served == registry.ORIGINAL or any(row["version"] == served for row in rows):
        return rows
    try:
        row = card_row(net, read_card(storage, net, served))
    except NotFound:
        return rows  # the pointer names a version that is gone: nothing to show for it
    return sorted([*rows, row], key=lambda r: r["version"])


def card(storage: Storage, engine: Engine, models_dir: str, net: str, version: str) -> dict:
    """One version's card from its row (its metrics.json if it has none yet; NotFound if
    neither is there); the original's from MODELS_DIR."""
    if version == registry.ORIGINAL:
        return registry.metrics(storage, models_dir, net, version)
    with db.reading(engine) as conn:
        row = records.version_row(conn, net, version)
    if row is not None:
        return json.loads(row["card"])
    return {k: v for k, v in read_card(storage, net, version).items() if k != "feedback_ids"}


# --- pinning ------------------------------------------------------------------------------


def pin_key(net: str, version: str) -> str:
    return registry.version_key(net, version, PIN)


def pin(storage: Storage, engine: Engine, net: str, version: str, pinned: bool, by: str) -> dict:
    """Pin a published version (never pruned) or unpin it; NotFound for an unknown version.

    Storage first when pinning and last when unpinning: a failure between the two leaves the
    version kept, never pruned while someone believes it pinned."""
    row = card_row(net, read_card(storage, net, version), pinned=pinned)
    if pinned:
        marker = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": by}
        storage.put(pin_key(net, version), json.dumps(marker).encode())
        still_there(storage, net, version)
    with db.writing(engine) as conn:
        records.add_version(conn, row)
    if not pinned:
        storage.delete(pin_key(net, version))
    return {"net": net, "version": version, "pinned": pinned}


def still_there(storage: Storage, net: str, version: str) -> None:
    """A prune that read no pin may have deleted the version before the pin was written: then
    take the pin away again and raise NotFound (a prune that deletes later sees the pin)."""
    try:
        read_card(storage, net, version)
    except NotFound:
        storage.delete(pin_key(net, version))
        raise


def is_pinned(storage: Storage, net: str, version: str) -> bool:
    try:
        storage.get(pin_key(net, version))
    except NotFound:
        return False
    return True


# --- pruning ------------------------------------------------------------------------------


@dataclass
class Pruned:
    net: str
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # or, in a dry run, to be deleted
    spared: list[str] = field(default_factory=list)  # served or pinned since the plan was made
    leftovers: list[str] = field(default_factory=list)  # folders without metrics.json, cleared


@dataclass
class Listing:
    """What storage holds for one net: complete versions, pinned ones, every version folder."""

    complete: list[str]
    pinned: set[str]
    keys: dict[str, list[str]]  # version -> its keys

    @classmethod
    def of(cls, storage: Storage, net: str) -> Listing:
        prefix = f"models/{registry.check_net(net)}/"
        keys: dict[str, list[str]] = {}
        for key in storage.list(prefix):
            version, _, name = key[len(prefix) :].partition("/")
            if registry.is_version(version) and version != registry.ORIGINAL and name:
                keys.setdefault(version, []).append(key)
        named = {v: {k.rsplit("/", 1)[1] for k in found} for v, found in keys.items()}
        complete = sorted(v for v, names in named.items() if "metrics.json" in names)
        return cls(complete, {v for v, names in named.items() if PIN in names}, keys)


def plan(storage: Storage, engine: Engine, net: str, keep: int) -> tuple[Listing, Pruned]:
    """What a prune of `net` would do now: keep and delete, by the rules above."""
    listing = Listing.of(storage, net)
    with db.reading(engine) as conn:
        pinned = listing.pinned | records.version_names(conn, net, pinned_only=True)
    served = registry.current(storage)[net]
    kept = set(listing.complete[-keep:] if keep > 0 else []) | pinned | {served}
    done = Pruned(net, kept=[v for v in listing.complete if v in kept])
    done.deleted = [v for v in listing.complete if v not in kept]
    done.leftovers = [v for v in listing.keys if v not in listing.complete and v != served]
    done.leftovers = sorted(v for v in done.leftovers if left_over(v))
    return listing, done


def left_over(version: str, now: datetime | None = None) -> bool:
    made = datetime.strptime(version[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - made > LEFTOVER_AFTER


def prune(storage: Storage, engine: Engine, net: str, keep: int, apply: bool = True) -> Pruned:
    """Delete the versions of `net` that are not kept (with `apply`; else only say which).
    Versions are deleted READERS at a time: the first prune of a deployment that kept every
    version has hundreds to delete, each a few round trips to S3."""
    listing, done = plan(storage, engine, net, keep)
    if not apply:
        return done
    planned, done.deleted = done.deleted, []
    with ThreadPoolExecutor(dataset.READERS) as pool:
        gone = list(pool.map(lambda version: delete_unless_wanted(storage, net, version), planned))
    for version, deleted in zip(planned, gone, strict=True):
        (done.deleted if deleted else done.spared).append(version)
    for version in done.leftovers:
        for key in listing.keys[version]:
            storage.delete(key)
    with db.writing(engine) as conn:
        records.remove_versions(conn, net, done.deleted)
    sync_rows(storage, engine, net, done.kept + done.spared)
    return done


def delete_unless_wanted(storage: Storage, net: str, version: str) -> bool:
    """Delete the version unless an admin pinned it or the pointer moved onto it (a rollback)
    since the plan was made: both are read again, before and after metrics.json goes
    (registry.delete_unserved), so a half-deleted version is never listed."""
    try:
        return registry.delete_unserved(
            storage, net, version, wanted=lambda: is_pinned(storage, net, version)
        )
    except NotFound:
        return True  # another prune deleted it first


def sync_rows(storage: Storage, engine: Engine, net: str, kept: list[str]) -> None:
    """Rows for the kept versions that lack one, and none for versions no longer in storage.

    Storage is listed after the rows are read: a row is added only once its metrics.json is
    written, so a row whose version that listing lacks is of a version that is gone."""
    with db.reading(engine) as conn:
        have = records.version_names(conn, net)
    present = set(Listing.of(storage, net).complete)
    with db.writing(engine) as conn:
        records.remove_versions(conn, net, sorted(have - present))
    for version in kept:
        if version in present and version not in have:
            try:
                record(storage, engine, net, version)
            except NotFound:
                pass  # deleted meanwhile by another prune
