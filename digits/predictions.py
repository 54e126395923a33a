"""Every prediction is kept (feedback refers to it by id), written in the background.

    predictions/<YYYY-MM-DD>/<id>.json
    {"id", "created", "versions": {net: version}, "fnn": {"digit", "probabilities"}, "cnn": {...},
     "empty", "image": "<base64 of the 200x200 PNG>"}

A prediction answers in well under a millisecond, and a storage write (an S3 round trip) would
take far longer, so `submit` only queues the record; one writer thread per process saves them.
Nobody was promised the save, so writes are `durable=False`, and when the queue is full the
record is dropped and counted rather than making the request wait. `load` finds a record that is
still queued, so feedback can follow its prediction at once.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from digits import preprocess
from digits.storage import NotFound, Storage, StorageError

log = logging.getLogger(__name__)

_ID = re.compile(r"^p(\d{4})(\d{2})(\d{2})T\d{12}-[0-9a-f]{8}$")
MAX_PENDING = 2000  # about 10 MB of queued drawings at most
BATCH = 64
# The writer wakes this often, or at once when a batch is full: waking it for every record
# would hand it the GIL in the middle of every request (measured: +1 ms a request).
WAKE_SECONDS = 0.25
WRITE_TRIES = 3


def new_id(now: datetime | None = None) -> str:
    """Sortable by time (to the microsecond), unique by the random suffix."""
    now = now or datetime.now(UTC)
    return f"p{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def key_of(prediction_id: str) -> str:
    """Storage key of a prediction id; ValueError if the id is not one of ours."""
    match = _ID.match(prediction_id) if isinstance(prediction_id, str) else None
    if match is None:
        raise ValueError(f"not a prediction id: {prediction_id!r}")
    year, month, day = match.groups()
    return f"predictions/{year}-{month}-{day}/{prediction_id}.json"


class Writer:
    """A bounded queue of records and the thread that saves them, oldest first."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._reset()

    def _reset(self) -> None:
        # Also called in a forked child: the parent's thread and lock state did not come along.
        self._cond = threading.Condition()
        self._pending: OrderedDict[str, tuple[Storage, dict]] = OrderedDict()
        self._writing: dict[str, dict] = {}
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self._flushing = 0  # flush() calls waiting: the writer does not wait for a full batch

    def submit(self, storage: Storage, record: dict) -> bool:
        """Queue a record for saving; False (and counted) if the queue is full. Never blocks."""
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("prediction queue full: %d records dropped so far", self.dropped)
                return False
            self._pending[record["id"]] = (storage, record)
            self._start()
            if len(self._pending) >= BATCH:
                self._cond.notify_all()
        return True

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="prediction-writer", daemon=True
            )
            self._thread.start()

    def pending(self, prediction_id: str) -> dict | None:
        with self._cond:
            item = self._pending.get(prediction_id)
            return item[1] if item else self._writing.get(prediction_id)

    def _take_batch(self) -> list[tuple[Storage, dict]]:
        with self._cond:
            while not self._pending:
                self._cond.wait(WAKE_SECONDS)  # idle: four cheap wake-ups a second
            # Then a full batch, a flush, or the timer, whichever comes first.
            self._cond.wait_for(lambda: len(self._pending) >= BATCH or self._flushing, WAKE_SECONDS)
            batch = []
            while self._pending and len(batch) < BATCH:
                _, (storage, record) = self._pending.popitem(last=False)
                self._writing[record["id"]] = record  # still visible to `pending` while saved
                batch.append((storage, record))
            return batch

    def _loop(self) -> None:
        while True:
            self._save(self._take_batch())

    def _save(self, batch: list[tuple[Storage, dict]]) -> None:
        # Several puts in flight where the storage waits on the network: one S3 round trip at a
        # time cannot keep up with a busy worker. Plain threads, not an executor: executors
        # refuse work once the interpreter is exiting, which is exactly when the at-exit flush
        # needs them.
        parallel = max(getattr(storage, "parallel_puts", 1) for storage, _ in batch)
        if parallel == 1:
            self._write_all(batch)
        else:
            shares = [batch[i::parallel] for i in range(parallel)]
            putters = [
                threading.Thread(target=self._write_all, args=(s,), daemon=True)
                for s in shares
                if s
            ]
            for putter in putters:
                putter.start()
            for putter in putters:
                putter.join()
        with self._cond:
            for _, record in batch:
                self._writing.pop(record["id"], None)
            self._cond.notify_all()

    def _write_all(self, share: list[tuple[Storage, dict]]) -> None:
        for storage, record in share:
            self._write(storage, record)

    def _write(self, storage: Storage, record: dict) -> None:
        for attempt in range(WRITE_TRIES):
            try:
                data = json.dumps(record, separators=(",", ":")).encode()
                storage.put(key_of(record["id"]), data, durable=False)
                self.written += 1
                return
            except (StorageError, OSError) as e:
                log.warning("prediction %s not saved (try %d): %s", record["id"], attempt + 1, e)
                time.sleep(0.5 * (attempt + 1))
            except Exception:  # a bug must not kill the writer and strand the queue
                log.exception("prediction %s dropped: cannot be saved", record.get("id"))
                self.dropped += 1
                return
        self.dropped += 1
        log.error("prediction %s dropped: storage kept failing", record["id"])

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is saved (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending or self._writing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
        return True


_WRITER = Writer()
os.register_at_fork(after_in_child=_WRITER._reset)
atexit.register(_WRITER.flush, 5.0)


def submit(storage: Storage, record: dict) -> bool:
    return _WRITER.submit(storage, record)


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
    return json.loads(storage.get(key).data)


# --- one prediction: record and response ---------------------------------------------------


def net_output(probabilities: np.ndarray | None, version: str | None = None) -> dict:
    """{"digit", "probabilities"} as plain JSON numbers (6 decimals); nulls for an empty canvas."""
    if probabilities is None:
        out = {"digit": None, "probabilities": None}
    else:
        rounded = [round(float(p), 6) for p in probabilities]
        out = {"digit": int(np.argmax(probabilities)), "probabilities": rounded}
    return out if version is None else {**out, "version": version}


def recognise(recognizer, storage: Storage, png: bytes, image: Image.Image) -> dict:
    """Run both nets on a drawing, queue its record, and return the /api/predict response."""
    x28 = preprocess.to_mnist(image)
    versions = recognizer.versions()
    outputs = None if x28 is None else recognizer.predict(x28)
    if outputs is not None:
        versions = {net: out.version for net, out in outputs.items()}
    record = make_record(versions, outputs, png)
    submit(storage, record)
    originals = None if x28 is None else recognizer.predict_original(x28)
    return response(record, outputs, originals, x28, recognizer)


def make_record(versions: dict, outputs: dict | None, png: bytes) -> dict:
    now = datetime.now(UTC)
    record = {"id": new_id(now), "created": now.isoformat(), "versions": versions}
    for net in versions:
        probabilities = None if outputs is None else outputs[net].probabilities
        record[net] = net_output(probabilities)
    record["empty"] = outputs is None
    record["image"] = base64.b64encode(png).decode("ascii")
    return record


def response(record: dict, outputs, originals, x28, recognizer) -> dict:
    versions = record["versions"]
    preview = x28 if x28 is not None else np.zeros((28, 28), np.float32)
    body = {"id": record["id"], "empty": record["empty"]}
    body["preview"] = preprocess.preview_data_url(preview)
    for net, version in versions.items():
        body[net] = {**record[net], "version": version}
    original_versions = {net: m.version for net, m in recognizer.original.items()}
    body["versions"] = {
        net: {"current": versions[net], "original": original_versions[net]} for net in versions
    }
    if originals is not None:
        body["original"] = {
            net: net_output(out.probabilities, out.version) for net, out in originals.items()
        }
    return body
