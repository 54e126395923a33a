"""The project's own dataset: labelled drawings kept in storage.

Each drawing is two objects under `drawings/<label>/`: the PNG, then its JSON
metadata. The metadata is written last and is the commit marker, so a drawing
whose metadata is missing was never acknowledged and is ignored.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from digits import __version__
from digits.storage import NotFound, Storage

log = logging.getLogger(__name__)
PREFIX = "drawings/"
# Storage reads in flight at once: S3 round trips overlap (fewer than botocore's pool of 10
# connections, which would otherwise be opened and dropped).
READERS = 8
READ_AHEAD = 128  # drawings read ahead of the one being written out
T = TypeVar("T")
K = TypeVar("K")
LABELS = [str(d) for d in range(10)] + ["none"]  # "none": the user said it is not a digit
# Names made here have at most 44 characters; a longer one is not ours (and one past 255
# bytes is not even a file name a disk can hold).
MAX_NAME = 100


def new_name(label: str) -> str:
    """Sortable by time, unique, and carrying its label: `3_20261124T053421123456_9f2c…`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{label}_{stamp}_{secrets.token_hex(6)}"


def sample_id(prediction_id: str) -> str:
    """A prediction id `p<stamp>-<hex>-<hex>` as the id part `<stamp>_<hex>_<hex>` of a
    drawing's name (older ids have one `-<hex>`).

    A drawing that came with feedback keeps its prediction's id, so `flask train` and the
    trainer agree on which drawings are held out (training.is_held_out hashes this part).
    """
    if prediction_id.startswith("p") and "-" in prediction_id:
        return prediction_id[1:].replace("-", "_")
    return prediction_id


def name_for_prediction(label: str, prediction_id: str) -> str:
    return f"{label}_{sample_id(prediction_id)}"


def label_of(name: str) -> str:
    label = name.split("_", 1)[0]
    bad_form = "/" in name or not name.replace("_", "").isalnum() or len(name) > MAX_NAME
    if label not in LABELS or bad_form:
        raise ValueError(f"not a drawing name: {name!r}")
    return label


def image_key(name: str) -> str:
    return f"{PREFIX}{label_of(name)}/{name}.png"


def meta_key(name: str) -> str:
    return f"{PREFIX}{label_of(name)}/{name}.json"


def save_drawing(
    storage: Storage,
    png: bytes,
    label: str,
    source: str,
    extra: dict | None = None,
    name: str | None = None,
    on_saved: Callable[[dict], None] | None = None,
) -> str:
    """Store a labelled drawing durably and return its name.

    A given `name` (a copy made from a feedback record) may be written again with the same
    content, so a retried copy completes instead of failing on its own first half.
    `on_saved(metadata)` runs once both objects are written: the database's index adds the row,
    in a transaction of its own (records.indexer), so no write lock waits on storage. If it
    fails, a new drawing's objects are withdrawn (nothing saved); a copy's are kept, as below.
    """
    exclusive = name is None
    name = name or new_name(label)
    meta = {
        "name": name,
        "label": label,
        "source": source,
        "created": datetime.now(UTC).isoformat(),
        "size": [200, 200],
        "bytes": len(png),
        "app_version": __version__,
        **(extra or {}),
    }
    storage.put(image_key(name), png, if_none_match=exclusive)
    try:
        storage.put(meta_key(name), json.dumps(meta).encode(), if_none_match=exclusive)
        if on_saved is not None:
            on_saved(meta)
    except Exception:
        # A copy's objects may be another copy's too, one that committed: keep them. A retry,
        # or the trainer's backfill, completes the copy under the same name.
        if exclusive:
            _forget(storage, meta_key(name))  # first: a drawing without it is never shown
            _forget(storage, image_key(name))
        raise
    return name


def _forget(storage: Storage, key: str) -> None:
    try:
        storage.delete(key)
    except NotFound:
        pass
    except Exception:
        # An orphan PNG without metadata is ignored by every reader. Metadata left without its
        # index row is shown nowhere either, though `flask db rebuild` would index it.
        log.warning("%s: not withdrawn after a failed save", key, exc_info=True)


def names(storage: Storage, label: str | None = None) -> list[str]:
    """Names of committed drawings, oldest first within each label."""
    prefix = f"{PREFIX}{label}/" if label else PREFIX
    found = []
    for key in storage.list(prefix):
        if key.endswith(".json"):
            found.append(key.rsplit("/", 1)[1][: -len(".json")])
    return found


def newest_first(found: Iterable[str]) -> list[str]:
    return sorted(found, key=lambda name: name.split("_", 1)[1], reverse=True)


def counts(storage: Storage) -> dict[str, int]:
    tally = {label: 0 for label in LABELS}
    for name in names(storage):
        tally[label_of(name)] += 1
    return tally


def metadata(storage: Storage, name: str) -> dict:
    return json.loads(storage.get(meta_key(name)).data)


def image(storage: Storage, name: str) -> bytes:
    metadata(storage, name)  # raises NotFound unless the drawing was committed
    return committed_image(storage, name)


def committed_image(storage: Storage, name: str) -> bytes:
    """The PNG of a drawing whose metadata was just read (by image_etag, say)."""
    return storage.get(image_key(name)).data


def image_etag(storage: Storage, name: str) -> str:
    """An HTTP validator for the drawing's PNG from its metadata alone; NotFound unless committed.

    Each write of a drawing ends with fresh metadata (a copy written again gets a new
    "created"), so a new PNG under a name always comes with a new tag.
    """
    created = metadata(storage, name).get("created")
    return hashlib.blake2b(f"{name} {created}".encode(), digest_size=12).hexdigest()


def delete(storage: Storage, name: str) -> None:
    """Remove the metadata first, so a half-finished delete leaves no visible drawing, and a
    retry finishes it; NotFound if neither part is there."""
    try:
        metadata(storage, name)
    except NotFound:
        storage.get(image_key(name))  # the image alone: a delete that stopped halfway
    storage.delete(meta_key(name))
    storage.delete(image_key(name))


def iter_drawings(storage: Storage, found: list[str]) -> Iterator[tuple[dict, bytes]]:
    """(metadata, PNG) of each drawing, in order; one deleted meanwhile is left out."""
    return read_each(
        found, lambda name: (metadata(storage, name), storage.get(image_key(name)).data)
    )


def iter_images(storage: Storage, rows: list[dict]) -> Iterator[tuple[dict, bytes]]:
    """(row, PNG) of each drawing whose row (name and label) is known already, in order; one
    deleted meanwhile is left out."""
    return read_each(rows, lambda row: (row, storage.get(image_key(row["name"])).data))


def iter_metadata(storage: Storage, found: list[str]) -> Iterator[dict]:
    """The metadata of each drawing, in order, without reading the images (the gallery)."""
    return read_each(found, lambda name: metadata(storage, name))


def read_each(found: list[K], read: Callable[[K], T]) -> Iterator[T]:
    """`read(name)` for each name, in order, READERS at a time: on S3 each read is a round trip
    of tens of milliseconds, and one after another a big export outlasts Heroku's 30 s."""

    def read_or_none(item: K) -> T | None:
        try:
            return read(item)
        except NotFound:
            return None  # deleted while we were reading

    with ThreadPoolExecutor(READERS) as pool:
        for start in range(0, len(found), READ_AHEAD):  # bounded: a chunk at a time in memory
            for result in pool.map(read_or_none, found[start : start + READ_AHEAD]):
                if result is not None:
                    yield result


def write_zip(
    storage: Storage,
    out: io.RawIOBase | io.BufferedIOBase,
    progress: Callable[[], None] | None = None,
    chunks: Iterable[list[dict]] | None = None,
) -> int:
    """Write every drawing as `<label>/<name>.png` plus `labels.csv`; return the count.

    `chunks` gives the drawings a list at a time as the database's index has them (name, label,
    source, created: an export job), so only their images are read; by default the names come
    from storage's listing and each drawing's metadata is read too. Memory stays bounded by a
    chunk: the images are read a few at a time and `labels.csv` grows in a temporary file.
    """
    count = 0
    with _table_file() as (table, rows), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for meta, png in _drawings_to_zip(storage, chunks):
            file = f"{meta['label']}/{meta['name']}.png"
            archive.writestr(file, png)
            source, created = meta.get("source") or "", meta.get("created") or ""
            rows.writerow([file, meta["label"], source, created])
            count += 1
            if progress:
                progress()
        _add_table(archive, table)
    return count


def _drawings_to_zip(
    storage: Storage, chunks: Iterable[list[dict]] | None
) -> Iterator[tuple[dict, bytes]]:
    if chunks is None:
        return iter_drawings(storage, names(storage))
    return (pair for chunk in chunks for pair in iter_images(storage, chunk))


def _add_table(archive: zipfile.ZipFile, table: io.TextIOWrapper) -> None:
    """labels.csv, copied from its temporary file a block at a time."""
    table.flush()
    table.buffer.seek(0)
    with archive.open(_table_entry(), "w") as entry:
        shutil.copyfileobj(table.buffer, entry)


def _table_entry() -> zipfile.ZipInfo:
    """labels.csv's entry, as writestr made it before the table went to a temporary file."""
    entry = zipfile.ZipInfo("labels.csv", time.localtime(time.time())[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o600 << 16
    return entry


@contextlib.contextmanager
def _table_file() -> Iterator[tuple[io.TextIOWrapper, Any]]:
    """A temporary file for labels.csv and its csv writer, its header written."""
    with tempfile.TemporaryFile() as raw:
        table = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        rows = csv.writer(table)
        rows.writerow(["file", "label", "source", "created"])
        try:
            yield table, rows
        finally:
            table.detach()  # the file closes once, with the TemporaryFile
