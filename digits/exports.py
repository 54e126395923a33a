"""Dataset exports as jobs: the admin API queues one, the trainer worker builds it into storage.

No request builds a zip: at 100k drawings that takes minutes, and Heroku's router gives a request
30 s. `POST /api/dataset/exports` adds a job (a row of `db.export_jobs`) and answers at once. The
trainer worker's export thread (`start_thread`; `flask --app main exports` runs it alone) claims
the job, writes the zip into a temporary file (names from the database's index, a chunk at a
time; images read a few at a time), uploads it to `exports/<id>-<attempt>.zip` and marks the
job done. The job's status shows its progress and, once done, where to download it.

- One job at a time: a request while one is queued or running gets that one.
- A claim is one UPDATE that checks the state again, so two workers never build one job. A
  running job whose heartbeat (each progress update) stopped for STALE_SECONDS lost its worker
  and is claimed again, MAX_ATTEMPTS times at most.
- Nothing half-saved: a job is done only once its zip is wholly in storage; a worker that finds
  its job claimed by another (it was thought dead) deletes what it uploaded.
- Storage does not fill: finished jobs past the newest KEEP_LAST, or older than KEEP_SECONDS,
  are deleted with their zip.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from digits import dataset, db, records
from digits.storage import Storage, StorageUnavailable

POLL_SECONDS = 5.0  # how often the export thread looks for a queued job
STALE_SECONDS = 120.0  # a running job not updated for this long lost its worker
PROGRESS_EVERY = 250  # drawings between progress updates (each one a heartbeat)
MAX_ATTEMPTS = 3
LINK_SECONDS = 3600  # a presigned link's life: short, and a new one comes with each status
KEEP_LAST = 3
KEEP_SECONDS = 86400.0
FRESH_SECONDS = 600.0  # the old GET /api/dataset/export hands out an export this recent
PREFIX = "exports/"
FILENAME = "digits-dataset.zip"
ID_PATTERN = re.compile(r"x[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")  # ASCII digits only, as new_id

log = logging.getLogger("digits.exports")
jobs = db.export_jobs


class Lost(Exception):
    """Another worker claimed this job since (ours was thought dead): stop, and keep nothing."""


def new_id(now: float) -> str:
    """Sortable by time and unguessable enough: `x20261207T221500-9f2c01ab`."""
    return f"x{datetime.fromtimestamp(now, UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def is_id(text: str) -> bool:
    return bool(ID_PATTERN.fullmatch(text))


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def status(job: dict) -> dict:
    """What the API shows of a job (the admin blueprint adds its URLs)."""
    return {
        "id": job["id"],
        "state": job["state"],
        "done": job["done"],
        "total": job["total"],
        "created": iso(job["created_at"]),
        "started": iso(job["started_at"]),
        "finished": iso(job["finished_at"]),
        "bytes": job["bytes"],
        "error": job["error"],
    }


# --- the jobs' rows --------------------------------------------------------------------------


def _one(conn: Connection, *where) -> dict | None:
    found = conn.execute(sa.select(jobs).where(*where).order_by(jobs.c.created_at.desc())).first()
    return found._asdict() if found else None


def find(engine: Engine, job_id: str) -> dict | None:
    with db.reading(engine) as conn:
        return _one(conn, jobs.c.id == job_id)


def recent_done(engine: Engine, seconds: float, now: float | None = None) -> dict | None:
    """The newest done job, if it finished within `seconds`."""
    since = (now or time.time()) - seconds
    with db.reading(engine) as conn:
        return _one(conn, jobs.c.state == "done", jobs.c.finished_at >= since)


def request(engine: Engine, now: float | None = None) -> tuple[dict, bool]:
    """The job queued or running, else a new queued one; and whether it is new.

    The unique `active` column settles two requests at once on two dynos: the second insert
    fails, and that request answers with the first one's job."""
    now = now or time.time()
    for _ in range(3):
        try:
            with db.writing(engine) as conn:
                found = _one(conn, jobs.c.active == 1)
                if found:
                    return found, False
                job_id = new_id(now)
                conn.execute(jobs.insert().values(new_row(job_id, now)))
                return _one(conn, jobs.c.id == job_id), True
        except sa.exc.IntegrityError:
            continue  # another request queued one first: the next round reads it
    raise db.DatabaseUnavailable("export jobs: could not queue or find one")


def new_row(job_id: str, now: float) -> dict:
    return {
        "id": job_id,
        "state": "queued",
        "active": 1,
        "created_at": now,
        "attempts": 0,
        "done": 0,
    }


def claimable(now: float):
    """Queued, or running without a heartbeat for STALE_SECONDS (its worker died)."""
    stale = sa.and_(jobs.c.state == "running", jobs.c.heartbeat_at < now - STALE_SECONDS)
    return sa.or_(jobs.c.state == "queued", stale)


def claim(engine: Engine, worker: str, now: float | None = None) -> dict | None:
    """The claimable job, now running as ours; None if there is none, or another worker won.
    A job that has used up its attempts fails instead."""
    now = now or time.time()
    with db.reading(engine) as conn:  # most polls find nothing: no write lock for those
        if _one(conn, claimable(now)) is None:
            return None
    with db.writing(engine) as conn:
        found = _one(conn, claimable(now))
        if found is None:
            return None
        mine = sa.and_(jobs.c.id == found["id"], claimable(now))  # checked again by the UPDATE
        if found["attempts"] >= MAX_ATTEMPTS:  # its worker stopped each time (killed, say)
            error = f"gave up after {MAX_ATTEMPTS} attempts: the worker stopped"
            conn.execute(jobs.update().where(mine).values(**ended("failed", now), error=error))
            return None
        claimed = conn.execute(
            jobs.update()
            .where(mine)
            .values(state="running", worker=worker, attempts=jobs.c.attempts + 1, done=0)
            .values(started_at=now, heartbeat_at=now)
        )
        if claimed.rowcount != 1:
            return None
        return _one(conn, jobs.c.id == found["id"])


def ended(state: str, now: float) -> dict:
    return {"state": state, "active": None, "finished_at": now}


def update_own(engine: Engine, job: dict, **values) -> None:
    """Update the job while it is running as ours (this worker, this attempt); Lost if not."""
    mine = sa.and_(
        jobs.c.id == job["id"],
        jobs.c.state == "running",
        jobs.c.worker == job["worker"],
        jobs.c.attempts == job["attempts"],
    )
    with db.writing(engine) as conn:
        updated = conn.execute(jobs.update().where(mine).values(**values))
    if updated.rowcount != 1:
        raise Lost(job["id"])


def beat(engine: Engine, job: dict, done: int, total: int) -> None:
    update_own(engine, job, done=done, total=max(total, done), heartbeat_at=time.time())


def give_back(engine: Engine, job: dict, error: str) -> None:
    """Storage or the database went away: queued again for a later poll, unless that was the
    last attempt."""
    if job["attempts"] >= MAX_ATTEMPTS:
        gave_up = f"gave up after {job['attempts']} attempts: {error}"
        update_own(engine, job, **ended("failed", time.time()), error=gave_up[:500])
        return
    again = {"state": "queued", "worker": None, "heartbeat_at": None}
    update_own(engine, job, **again, error=f"will retry: {error}"[:500])


# --- building one ----------------------------------------------------------------------------


def drawing_count(engine: Engine) -> int:
    with db.reading(engine) as conn:
        return records.shown_count(conn)


def rows_after(engine: Engine, after: str) -> list[dict]:
    """The next chunk of the index, each in its own short read: no transaction stays open for
    the minutes an export takes."""
    with db.reading(engine) as conn:
        return records.drawing_rows(conn, after)


def by_name(row: dict) -> str:
    return row["name"]


def zip_key(job: dict) -> str:
    """Each attempt its own key: a worker thought dead cannot overwrite the one that won."""
    return f"{PREFIX}{job['id']}-{job['attempts']}.zip"


def write(engine: Engine, storage: Storage, out: BinaryIO, step: Callable[[], None]) -> int:
    """The zip of every drawing the index names (a chunk of rows at a time; storage is never
    listed, and only the images are read) into `out`, `step()` after each; the count. A job's,
    and `flask dataset export`'s."""
    chunks = records.in_chunks(lambda after: rows_after(engine, after), key=by_name)
    return dataset.write_zip(storage, out, step, chunks)


def build(engine: Engine, storage: Storage, job: dict) -> None:
    """Write the zip from the index and storage into a temporary file, upload it, mark it done."""
    total = drawing_count(engine)
    beat(engine, job, 0, total)
    written = 0

    def step() -> None:
        nonlocal written
        written += 1
        if written % PROGRESS_EVERY == 0:
            beat(engine, job, written, total)

    with tempfile.TemporaryFile(prefix="digits-export-") as out:
        count = write(engine, storage, out, step)
        size = out.tell()
        beat(engine, job, count, count)  # the last heartbeat before the upload
        out.seek(0)
        storage.put_file(zip_key(job), out)
    try:
        ended_well = ended("done", time.time()) | {"error": None}  # an earlier attempt's
        update_own(engine, job, **ended_well, key=zip_key(job), bytes=size)
    except Lost:
        storage.delete(zip_key(job))
        raise


def run(engine: Engine, storage: Storage, job: dict) -> None:
    """Build a claimed job; a failure is written on the job, for the admin to see."""
    try:
        build(engine, storage, job)
        log.info("exports: %s done", job["id"])
    except Lost:
        log.warning("exports: %s was claimed by another worker; this attempt stops", job["id"])
    except StorageUnavailable as e:  # the database's failures too (DatabaseUnavailable)
        log.warning("exports: %s stopped, will retry: %s", job["id"], e)
        give_back(engine, job, str(e))
    except Exception as e:
        log.exception("exports: %s failed", job["id"])
        update_own(engine, job, **ended("failed", time.time()), error=f"{e!r}"[:500])


def prune(engine: Engine, storage: Storage, now: float | None = None) -> int:
    """Delete finished jobs past the newest KEEP_LAST or older than KEEP_SECONDS: every zip an
    attempt left, then the row (a delete that fails is done at the next poll)."""
    now = now or time.time()
    finished = jobs.c.state.in_(("done", "failed"))
    newest_first = sa.select(jobs.c.id, jobs.c.finished_at).where(finished)
    with db.reading(engine) as conn:
        rows = conn.execute(newest_first.order_by(jobs.c.finished_at.desc())).all()
    too_old = now - KEEP_SECONDS
    old = [row.id for i, row in enumerate(rows) if i >= KEEP_LAST or row.finished_at < too_old]
    for job_id in old:
        for key in list(storage.list(f"{PREFIX}{job_id}-")):
            storage.delete(key)
        with db.writing(engine) as conn:
            conn.execute(jobs.delete().where(jobs.c.id == job_id))
    return len(old)


# --- the worker ------------------------------------------------------------------------------


def worker_name() -> str:
    """Which process claimed a job, for the logs: the dyno (or host) and the process."""
    return f"{os.environ.get('DYNO') or socket.gethostname()}:{os.getpid()}"[:64]


def run_pending(engine: Engine, storage: Storage, worker: str | None = None) -> str | None:
    """One poll: build the claimable job, if any, then prune; the id of the job it ran."""
    job = claim(engine, worker or worker_name())
    if job is not None:
        run(engine, storage, job)
    prune(engine, storage)
    return None if job is None else job["id"]


def serve(engine: Engine, storage: Storage, stop: threading.Event, interval: float) -> None:
    """Poll until `stop` is set. A failure is logged, and the next poll tries again."""
    worker = worker_name()
    while not stop.is_set():
        try:
            run_pending(engine, storage, worker)
        except Exception:
            log.exception("exports: poll failed; will retry")
        stop.wait(interval)


def start_thread(
    engine: Engine, storage: Storage, interval: float = POLL_SECONDS
) -> threading.Event:
    """The export thread (the trainer worker's): a daemon, so it never holds the process up.
    Returns the event that stops it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=serve, args=(engine, storage, stop, interval), name="exports", daemon=True
    )
    thread.start()
    return stop
