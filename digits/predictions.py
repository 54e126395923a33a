"""Every prediction is kept (feedback refers to it by id), written in the background in batches.

    predictions/<YYYY-MM-DD>/<batch>.jsonl        one record per line:
    {"id", "created", "versions": {net: version}, "fnn": {"digit", "probabilities"}, "cnn": {...},
     "empty", "image": "<base64 of the 200x200 PNG>"}

A prediction answers in about a millisecond, and a storage write costs far more: an S3 round
trip, or a file created and renamed on a local disk (about 0.3 ms of CPU, measured under load).
So `submit` only queues the record, and one writer thread per process saves each batch of
records as one object. A batch opens with the first record after the last one closed (full, or
taken by the writer), and its name starts each of its ids (`p<time>-<batch hex>-<record hex>`),
so feedback finds a record with one read. Nobody was promised the save, so writes are
`durable=False`. A batch that storage refuses stays queued and is tried again, less often the
longer storage stays away, so an outage loses nothing while the queue has room; when it is full
(MAX_PENDING records, failed batches included) the oldest record is dropped and counted rather
than making a request wait. `load` finds a record while it is queued, so feedback can follow its
prediction at once, and find it during an outage too.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digits.storage import NotFound, Storage, StorageError

log = logging.getLogger(__name__)

# p<batch time>-<batch hex>-<record hex>. Ids from before batching lack the record part; each
# of those records is its own object, and they stay readable (feedback across a deploy).
_ID = re.compile(r"(p\d{8}T\d{12}-[0-9a-f]{8})(-[0-9a-f]{8})?", re.ASCII)
MAX_PENDING = 2000  # about 10 MB of queued drawings at most, batches that failed included
BATCH = 64
# The writer wakes this often, or at once when a batch is full: waking it for every record
# would hand it the GIL in the middle of every request (measured: +1 ms a request).
WAKE_SECONDS = 0.25
# After a storage error the batch stays queued and its storage rests before the next try:
# RETRY_SECONDS, doubled each time up to RETRY_MAX_SECONDS. So a long outage costs one failed
# write every 4 s, and the flush at exit (5 s) still gets a try.
RETRY_SECONDS = 0.5
RETRY_MAX_SECONDS = 4.0
LOG_EVERY_SECONDS = 60.0  # while a storage keeps failing, the warning is repeated this often


def new_batch_name(now: datetime | None = None) -> str:
    """Sortable by time (to the microsecond), unique by the random suffix."""
    now = now or datetime.now(UTC)
    return f"p{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def new_id(now: datetime | None = None) -> str:
    """A well-formed id of a batch of its own (tests, and ids that are never saved)."""
    return f"{new_batch_name(now)}-{secrets.token_hex(4)}"


def key_of(prediction_id: str) -> str:
    """Key of the object holding a prediction's record; ValueError if the id is not ours."""
    match = _ID.fullmatch(prediction_id) if isinstance(prediction_id, str) else None
    if match is None:
        raise ValueError(f"not a prediction id: {prediction_id!r}")
    batch, record_part = match.groups()
    return batch_key(batch) if record_part else f"{_folder(batch)}/{batch}.json"


def opened_at(prediction_id: str) -> datetime:
    """When the batch holding this prediction opened; ValueError if the id is not ours."""
    key_of(prediction_id)
    return datetime.strptime(prediction_id[1:22], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


def batch_key(name: str) -> str:
    return f"{_folder(name)}/{name}.jsonl"


def _folder(name: str) -> str:
    return f"predictions/{name[1:5]}-{name[5:7]}-{name[7:9]}"


@dataclass
class Batch:
    """Records that will be saved together, as one object, in one storage."""

    storage: Storage
    name: str = field(default_factory=new_batch_name)
    records: dict[str, dict] = field(default_factory=dict)

    def add(self, fields: dict) -> dict:
        record_id = f"{self.name}-{secrets.token_hex(4)}"
        while record_id in self.records:  # 32 random bits: a clash is rare, but not impossible
            record_id = f"{self.name}-{secrets.token_hex(4)}"
        record = {"id": record_id, **fields}
        self.records[record_id] = record
        return record

    def encode(self) -> tuple[bytes, list[str]]:
        """The JSON lines of every record that can be encoded, and the ids of those that cannot."""
        lines, bad = [], []
        for record in self.records.values():
            try:
                lines.append(json.dumps(record, separators=(",", ":")).encode())
            except (TypeError, ValueError):
                log.exception("prediction %s dropped: cannot be encoded", record["id"])
                bad.append(record["id"])
        return b"".join(line + b"\n" for line in lines), bad


def find_record(data: bytes, prediction_id: str) -> dict:
    """The record with this id among a batch's JSON lines; NotFound if it is not there."""
    start = b'{"id":"' + prediction_id.encode() + b'"'
    for line in data.splitlines():
        if line.startswith(start):
            return json.loads(line)
    raise NotFound(prediction_id)


@dataclass
class Outage:
    """A storage whose last write failed: when to try it again, and when to say so again."""

    failures: int = 0
    delay: float = 0.0
    retry_at: float = 0.0
    logged_at: float = float("-inf")

    def failed(self, now: float) -> bool:
        """Count a failure and schedule the next try; True when it is time to log it."""
        self.failures += 1
        self.delay = min(2 * self.delay, RETRY_MAX_SECONDS) if self.delay else RETRY_SECONDS
        self.retry_at = now + self.delay
        if now - self.logged_at < LOG_EVERY_SECONDS:
            return False
        self.logged_at = now
        return True


class Writer:
    """A bounded queue of records and the thread that saves them, a batch at a time."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._reset()

    def _reset(self) -> None:
        # Also called in a forked child: the parent's thread and lock state did not come along.
        self._cond = threading.Condition()
        self._open: dict[int, Batch] = {}  # by id(storage): the batch new records join
        # Closed batches, oldest first, each kept until it is saved (or dropped): `pending`
        # finds their records, and max_pending counts them, failed or being saved alike.
        self._closed: deque[Batch] = deque()
        self._saving: Batch | None = None
        self._outages: dict[int, Outage] = {}  # by id(storage): failed, resting until a retry
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self._flushing = 0  # flush() calls waiting: the writer does not wait for a full batch

    def submit(self, storage: Storage, fields: dict) -> dict:
        """The record (`fields` with an id first), queued for saving. Never blocks: when the
        queue is full the oldest queued record is dropped and counted (this one if all of
        them are being saved right now), and a dropped record's id will not be found."""
        with self._cond:
            if self._queued() >= self.max_pending and not self._drop_oldest():
                self._drop()
                return {"id": new_id(), **fields}
            batch = self._open.get(id(storage))
            if batch is None:
                batch = self._open[id(storage)] = Batch(storage)
            record = batch.add(fields)
            self._start()
            if len(batch.records) >= BATCH:  # new records join a new batch, even in an outage
                self._closed.append(self._open.pop(id(storage)))
                self._cond.notify_all()
        return record

    def _queued(self) -> int:
        return sum(len(b.records) for b in (*self._closed, *self._open.values()))

    def _drop_oldest(self) -> bool:
        """Drop the oldest record that is not being saved; False if there is none.

        Oldest first, because feedback comes seconds after its prediction: the newest records
        are the ones whose feedback is still to come, while an old record's user has answered
        already (and in an outage that answer was refused with a 503 anyway)."""
        for batch in (*self._closed, *self._open.values()):
            if batch is not self._saving and batch.records:
                del batch.records[next(iter(batch.records))]
                self._drop()
                return True
        return False

    def _drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            log.warning("prediction queue full: %d records dropped so far", self.dropped)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="prediction-writer", daemon=True
            )
            self._thread.start()

    def pending(self, prediction_id: str) -> dict | None:
        """The record if it is queued, being saved, or waiting for its storage to come back."""
        with self._cond:
            for batch in (*self._open.values(), *self._closed):
                if prediction_id in batch.records:
                    return batch.records[prediction_id]
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                # A full batch, a flush, a retry that is due, or the timer: whichever is first.
                self._cond.wait_for(self._work_to_do, WAKE_SECONDS)
                self._close_open_batches()
            while (batch := self._next_to_save()) is not None:
                self._save(batch)

    def _work_to_do(self) -> bool:
        now = time.monotonic()
        if self._flushing > 0 and any(self._ready(key, now) for key in self._open):
            return True
        return any(self._ready(id(batch.storage), now) for batch in self._closed)

    def _ready(self, storage_key: int, now: float) -> bool:
        """False while the storage rests after a failed write."""
        outage = self._outages.get(storage_key)
        return outage is None or outage.retry_at <= now

    def _close_open_batches(self) -> None:
        # But a resting storage's: its batch fills up to BATCH records meanwhile, rather than
        # the outage making a tiny batch (one more object to write) every WAKE_SECONDS.
        now = time.monotonic()
        for key in [key for key in self._open if self._ready(key, now)]:
            self._closed.append(self._open.pop(key))

    def _next_to_save(self) -> Batch | None:
        """The oldest closed batch whose storage is not resting, now marked as being saved."""
        with self._cond:
            now = time.monotonic()
            ready = (b for b in self._closed if self._ready(id(b.storage), now))
            self._saving = next(ready, None)
            return self._saving

    def _save(self, batch: Batch) -> None:
        data = self._encode(batch)
        try:
            if batch.records:  # not all dropped (a full queue, or records it cannot encode)
                batch.storage.put(batch_key(batch.name), data, durable=False)
        except (StorageError, OSError) as e:
            self._keep(batch, e)
        except Exception:  # a bug must not kill the writer, nor be retried for ever
            log.exception("%d predictions of batch %s dropped", len(batch.records), batch.name)
            self._done(batch, saved=False)
        else:
            self._done(batch, saved=True)

    def _encode(self, batch: Batch) -> bytes:
        data, bad = batch.encode()
        with self._cond:  # dropped once, not at every retry of the batch
            for record_id in bad:
                del batch.records[record_id]
            self.dropped += len(bad)
        return data

    def _keep(self, batch: Batch, error: Exception) -> None:
        """A storage error: the batch stays queued, and its storage rests before a retry."""
        with self._cond:
            self._saving = None
            outage = self._outages.setdefault(id(batch.storage), Outage())
            speak = outage.failed(time.monotonic())
            queued = self._queued()
            self._cond.notify_all()
        if speak:  # the first failure, then once a minute at most, however long it lasts
            log.warning(
                "predictions not saved (%d failed tries so far); %d records kept for a retry: %s",
                outage.failures,
                queued,
                error,
            )

    def _done(self, batch: Batch, saved: bool) -> None:
        """The batch leaves the queue: saved, or dropped for a bug."""
        with self._cond:
            self._closed.remove(batch)
            self._saving = None
            if saved:
                self.written += len(batch.records)
            else:
                self.dropped += len(batch.records)
            wrote = saved and batch.records  # an empty batch says nothing of its storage
            outage = self._outages.pop(id(batch.storage), None) if wrote else None
            self._cond.notify_all()
        if outage is not None:
            log.warning("predictions saved again after %d failed tries", outage.failures)

    def unsaved(self) -> int:
        """Records still in memory: queued, waiting for a retry, or being saved."""
        with self._cond:
            return self._queued()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is saved (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._open or self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
        return True


_WRITER = Writer()
os.register_at_fork(after_in_child=_WRITER._reset)


def _flush_at_exit(timeout: float = 5.0) -> None:
    """Save what is queued before the process ends; say what could not be (an outage)."""
    if not _WRITER.flush(timeout):
        lost = _WRITER.unsaved()
        log.error("exiting with %d predictions unsaved: storage did not answer in time", lost)


atexit.register(_flush_at_exit)


def submit(storage: Storage, fields: dict) -> dict:
    return _WRITER.submit(storage, fields)


def flush(timeout: float = 10.0) -> bool:
    return _WRITER.flush(timeout)


def writer() -> Writer:
    return _WRITER


def load(storage: Storage, prediction_id: str) -> dict:
    """The stored record of a prediction, queued or saved; NotFound if unknown or invalid."""
    try:
        key = key_of(prediction_id)
    except ValueError:
        raise NotFound(str(prediction_id)) from None
    record = _WRITER.pending(prediction_id)
    if record is not None:
        return record
    data = storage.get(key).data
    return find_record(data, prediction_id) if key.endswith(".jsonl") else json.loads(data)
