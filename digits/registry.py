"""Versioned models in storage, and the pointer naming the version each net serves.

    models/<net>/<version>/model.tflite   immutable, written with if_none_match
    models/<net>/<version>/model.keras
    models/<net>/<version>/metrics.json   written last: a version exists once this does
    (models/<net>/<version>/pinned.json   an admin's pin: digits/lifecycle.py keeps the version)
    models/current.json                   {"fnn": v, "cnn": v, "updated": iso, "by": who}

The pointer only ever changes by compare-and-swap (if_match on the etag read, or if_none_match
when absent), so two trainers never overwrite each other's update. The files shipped in
MODELS_DIR (`fnn.tflite`, `fnn.keras`, `fnn.json`, ...) are the version "original"; with no
pointer, every net serves the original. No TensorFlow here: the web process imports this.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from digits.model import BadModel, verify_tflite
from digits.nets import NETS
from digits.storage import NotFound, PreconditionFailed, Storage

ORIGINAL = "original"
POINTER = "models/current.json"
FILES = ("model.tflite", "model.keras", "metrics.json")
# Sortable by time (to the second), unique by the random suffix.
_VERSION = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}", re.ASCII)
# Enough for any realistic number of trainers racing; each try is one read and one write.
MAX_POINTER_TRIES = 20

__all__ = ["NotFound", "PreconditionFailed"]


def new_version(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"net must be one of {', '.join(NETS)}, not {net!r}")
    return net


def is_version(version: object) -> bool:
    return version == ORIGINAL or (isinstance(version, str) and bool(_VERSION.fullmatch(version)))


def version_key(net: str, version: str, name: str) -> str:
    if not _VERSION.fullmatch(version):
        raise NotFound(f"{net} {version}")
    return f"models/{check_net(net)}/{version}/{name}"


# --- the pointer --------------------------------------------------------------------------


def read_pointer(storage: Storage) -> tuple[dict, str | None]:
    """The pointer's content and etag; ({}, None) when there is none yet."""
    try:
        blob = storage.get(POINTER)
    except NotFound:
        return {}, None
    try:
        pointer = json.loads(blob.data)
    except ValueError:
        pointer = None
    return (pointer if isinstance(pointer, dict) else {}), blob.etag


def current(storage: Storage) -> dict[str, str]:
    """net -> the version it serves; "original" for a net the pointer does not name."""
    pointer, _ = read_pointer(storage)
    return {net: v if is_version(v := pointer.get(net)) else ORIGINAL for net in NETS}


def default_by() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def move_pointer(
    storage: Storage, net: str, version: str, expected: str | None = None, by: str | None = None
) -> dict:
    """Point `net` at `version` by compare-and-swap, retrying when another writer got in first.

    With `expected`, raise PreconditionFailed as soon as the pointer no longer names it.
    """
    for _ in range(MAX_POINTER_TRIES):
        pointer, etag = read_pointer(storage)
        served = {net: v if is_version(v := pointer.get(net)) else ORIGINAL for net in NETS}
        if expected is not None and served[net] != expected:
            raise PreconditionFailed(f"{net} now serves {served[net]}, not {expected}")
        updated = {**served, net: version, "updated": _now(), "by": by or default_by()}
        data = json.dumps(updated, indent=1).encode()
        try:
            if etag is None:
                storage.put(POINTER, data, if_none_match=True)
            else:
                storage.put(POINTER, data, if_match=etag)
            return updated
        except PreconditionFailed:
            continue  # someone else moved it: re-read and try on top of theirs
    raise PreconditionFailed(f"{POINTER}: still contended after {MAX_POINTER_TRIES} tries")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- publishing and rolling back ----------------------------------------------------------


def publish(
    storage: Storage,
    net: str,
    tflite: bytes,
    keras: bytes,
    metrics: dict,
    expected_version: str | None = None,
    by: str | None = None,
) -> str:
    """Store a new version of `net` and point the net at it; returns the version.

    The tflite is checked in LiteRT first, the files are written before the pointer moves, so a
    crash at any step leaves the last good version served. With `expected_version`, raise
    PreconditionFailed if another version was published meanwhile (retrain on top of it).
    """
    check_net(net)
    verify_tflite(tflite, net)
    if expected_version is not None and current(storage)[net] != expected_version:
        raise PreconditionFailed(f"{net} no longer serves {expected_version}")
    version = new_version()
    card = {**metrics, "net": net, "version": version, "created": _now()}
    storage.put(version_key(net, version, "model.tflite"), tflite, if_none_match=True)
    storage.put(version_key(net, version, "model.keras"), keras, if_none_match=True)
    body = json.dumps(card, indent=1).encode()
    storage.put(version_key(net, version, "metrics.json"), body, if_none_match=True)
    try:
        move_pointer(storage, net, version, expected=expected_version, by=by)
    except PreconditionFailed:
        discard(storage, net, version)  # lost the race: never served, so not kept either
        raise
    return version


def discard(storage: Storage, net: str, version: str) -> None:
    # metrics.json first: without it the version is no longer listed, even if a delete fails.
    for name in reversed(FILES):
        storage.delete(version_key(net, version, name))


def delete_unserved(
    storage: Storage, net: str, version: str, wanted: Callable[[], bool] = lambda: False
) -> bool:
    """Delete a version that the pointer does not name and `wanted()` (an admin's pin, say) does
    not keep; False, and the version whole, if either does.

    Against a rollback (or a pin) at the same moment, both are read before and again after
    metrics.json goes, which goes first: one that landed in between gets the card put back; one
    that lands after finds the card gone when it checks again, and undoes itself (rollback)."""
    key = version_key(net, version, "metrics.json")
    if current(storage)[net] == version or wanted():
        return False
    card = storage.get(key).data
    storage.delete(key)
    if current(storage)[net] == version or wanted():
        storage.put(key, card, if_none_match=True)
        return False
    discard(storage, net, version)
    return True


def rollback(storage: Storage, net: str, version: str, by: str | None = None) -> dict:
    """Point `net` back at an existing version (or "original"); returns the new pointer.

    Raises NotFound for a version that was never published (or was deleted: digits/lifecycle.py),
    and model.BadModel for one whose model.tflite is missing or not a loadable net: the pointer
    would name a version that every worker refuses to load, so the API would claim one that is
    not served.
    """
    check_net(net)
    if version == ORIGINAL:
        return move_pointer(storage, net, version, by=by)
    storage.get(version_key(net, version, "metrics.json"))  # NotFound if unknown
    _check_servable(storage, net, version)
    before = current(storage)[net]
    pointer = move_pointer(storage, net, version, by=by)
    try:  # a prune that read the pointer before it moved may have deleted the version meanwhile
        storage.get(version_key(net, version, "metrics.json"))
    except NotFound:
        with contextlib.suppress(PreconditionFailed):  # moved on again: leave it to its mover
            move_pointer(storage, net, before, expected=version, by=by)
        raise
    return pointer


def _check_servable(storage: Storage, net: str, version: str) -> None:
    """Raise model.BadModel unless the version's model.tflite is there and loads in LiteRT."""
    try:
        tflite = storage.get(version_key(net, version, "model.tflite")).data
    except NotFound:
        raise BadModel(f"{net} {version}: its model.tflite is missing") from None
    verify_tflite(tflite, net, version)


# --- reading versions ---------------------------------------------------------------------


def published(storage: Storage, net: str) -> list[str]:
    """Complete versions of `net` (those with metrics.json), oldest first."""
    prefix = f"models/{check_net(net)}/"
    found = []
    for key in storage.list(prefix):
        version, _, name = key[len(prefix) :].partition("/")
        if name == "metrics.json" and _VERSION.fullmatch(version):
            found.append(version)
    return sorted(found)


def _shipped(models_dir: str, net: str, suffix: str) -> bytes:
    path = Path(models_dir) / f"{check_net(net)}{suffix}"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(str(path)) from None


def load_tflite(storage: Storage, models_dir: str, net: str, version: str) -> bytes:
    if version == ORIGINAL:
        return _shipped(models_dir, net, ".tflite")
    return storage.get(version_key(net, version, "model.tflite")).data


def load_keras_bytes(storage: Storage, models_dir: str, net: str, version: str) -> bytes:
    if version == ORIGINAL:
        return _shipped(models_dir, net, ".keras")
    return storage.get(version_key(net, version, "model.keras")).data


def metrics(storage: Storage, models_dir: str, net: str, version: str) -> dict:
    """The version's metrics card; the original's is MODELS_DIR/<net>.json."""
    if version != ORIGINAL:
        return json.loads(storage.get(version_key(net, version, "metrics.json")).data)
    try:
        card = json.loads(_shipped(models_dir, net, ".json"))
    except NotFound:
        card = {}  # a shipped net without its card still serves
    return {**card, "version": ORIGINAL, "created": card.get("created") or card.get("trained_at")}
