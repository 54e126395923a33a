"""The records database: SQLite in `instance/` by default, PostgreSQL when DATABASE_URL is set.

The records are what the app counts, groups, pages and queries: feedback (one row per answered
prediction), the dataset's index, the trainer's progress per net and sample, and the tallies the
stats read. The blobs stay in storage (drawings' PNGs, feedback records as JSON with their
drawing, model files, prediction batches), so `flask db rebuild` can make every record again
from storage alone (digits/rebuild.py). The export jobs are the one exception: they are
ephemeral, and a rebuild leaves them out (an admin asks for a new export).

Flask-style: `init_app(app)` puts the engine in `app.extensions["db"]`; `flask db upgrade` runs
the Alembic migrations in `digits/migrations/`. The embedded SQLite database is upgraded when
the app starts, so `make run` needs nothing; PostgreSQL is upgraded by the release phase.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from digits.storage import StorageUnavailable

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    }
)
ID = sa.String(64)  # prediction ids are 40 characters (digits/predictions.py)
VERSION = sa.String(40)  # "original" or a registry version
TIME = sa.String(40)  # ISO 8601 with its offset, as the JSON records have it

# One row per prediction that took feedback. The primary key is the commit point: a second
# answer to one prediction fails on it, in any process on any dyno.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", ID, primary_key=True),
    sa.Column("created", TIME, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),  # seconds since the epoch, for means
    sa.Column("day", sa.String(10), nullable=False),  # the UTC date: the timeline's group
    sa.Column("digit", sa.SmallInteger, nullable=True),  # None: "not a digit"
    sa.Column("consent", sa.Boolean, nullable=False),
    sa.Column("has_image", sa.Boolean, nullable=False),  # the JSON record holds the drawing
    sa.Column("held_out", sa.Boolean, nullable=False),  # digits/holdout.py: never trained on
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("fnn_digit", sa.SmallInteger, nullable=False),
    sa.Column("cnn_digit", sa.SmallInteger, nullable=False),
    sa.Column("fnn_version", VERSION, nullable=False),
    sa.Column("cnn_version", VERSION, nullable=False),
)

# What /api/stats reads, kept up to date in the transaction that adds each feedback row: one
# row per day, net, serving version, true digit (-1: "not a digit") and the digit the net said.
# Its size follows the days and versions, not the answers, so the stats cost the same at 2k
# and at 1M answers.
feedback_tally = sa.Table(
    "feedback_tally",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("net", sa.String(8), primary_key=True),
    sa.Column("version", VERSION, primary_key=True),
    sa.Column("truth", sa.SmallInteger, primary_key=True),
    sa.Column("said", sa.SmallInteger, primary_key=True),
    sa.Column("answers", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Double, nullable=False),  # the answers' times added up
)

# The dataset's index: the gallery pages through it and the counts group it, so neither lists
# storage. `sort_key` is the name without its label, the gallery's newest-first order.
drawings = sa.Table(
    "drawings",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("label", sa.String(4), nullable=False),
    sa.Column("sort_key", sa.String(100), nullable=False),
    sa.Column("created", TIME, nullable=True),
    sa.Column("source", sa.String(16), nullable=True),
    sa.Column("prediction_id", ID, nullable=True),
    # An admin's delete: kept as a row, so a feedback drawing is not copied back by a repair.
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    # The gallery's order (sort_key, then name) in the index alone: a page is a range from its
    # anchor, and the anchors are one pass over it (digits/gallery.py).
    sa.Index(None, "deleted", "sort_key", "name"),
    sa.Index(None, "label", "deleted", "sort_key", "name"),
    sa.Index(None, "prediction_id"),  # which feedback drawings were copied (records.uncopied)
)

# The drawings shown (not deleted) per label: what the counts answer and the gallery's totals,
# kept in the transaction that adds or deletes a drawing's row, so neither counts the index.
drawing_counts = sa.Table(
    "drawing_counts",
    metadata,
    sa.Column("label", sa.String(4), primary_key=True),
    sa.Column("drawings", sa.Integer, nullable=False),
)

# The trainer's progress: a row per net and sample it has dealt with (learned, rejected,
# skipped, held_out). Pending work is a learnable feedback row without one.
trainer_progress = sa.Table(
    "trainer_progress",
    metadata,
    sa.Column("net", sa.String(8), primary_key=True),
    sa.Column("prediction_id", ID, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version", VERSION, nullable=True),
    sa.Column("at", TIME, nullable=False),
)

# One row per published model version, so the Stats and Models pages and `flask models list` read
# a few rows instead of every version's metrics.json. Storage stays the truth (`flask db rebuild`
# makes the rows again): a row is added after the version's metrics.json is written and removed
# when the version is deleted; `pinned` (also a marker in storage) keeps it from being pruned.
model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("net", sa.String(8), primary_key=True),
    sa.Column("version", VERSION, primary_key=True),
    sa.Column("created", TIME, nullable=True),
    sa.Column("card", sa.Text, nullable=False),  # metrics.json without its feedback ids
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Dataset exports as jobs (digits/exports.py): the admin API queues one, the trainer worker
# builds it into storage. `active` is 1 while a job is queued or running and NULL after: its
# unique constraint (NULLs are distinct) lets at most one job be active, on any dyno.
# `heartbeat_at` tells a job whose worker died (not beating) from one at work.
export_jobs = sa.Table(
    "export_jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(8), nullable=False),  # queued, running, done, failed
    sa.Column("active", sa.SmallInteger, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),  # seconds since the epoch, as the others
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Column("heartbeat_at", sa.Double, nullable=True),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("attempts", sa.SmallInteger, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),  # drawings written so far
    sa.Column("total", sa.Integer, nullable=True),
    sa.Column("key", sa.String(100), nullable=True),  # the zip in storage, once done
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.UniqueConstraint("active"),
    sa.Index(None, "state", "created_at"),
)

BUSY_SECONDS = 5.0  # SQLite: how long a writer waits for another one's lock
CONNECT_SECONDS = 3  # PostgreSQL: a server that does not answer is a 503 well inside 30 s
STATEMENT_MS = 5000


class DatabaseUnavailable(StorageUnavailable):
    """The database cannot be reached, or did not answer in time; nothing was written.

    A kind of StorageUnavailable, so every caller that answers 503 for storage (the API, the
    commands, the trainer's loop) does the same for the database."""


def database_url(url: str) -> str:
    """SQLAlchemy's name for the URL: Heroku Postgres sets `postgres://`, and psycopg 3 is the
    driver for any PostgreSQL URL that names none."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def check_url(name: str, value: object) -> str:
    """A DATABASE_URL SQLAlchemy can use: sqlite:///path, or postgres(ql)://… (BadSetting)."""
    from digits.settings import refused

    url = database_url(str(value).strip())
    try:
        dialect = sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        dialect = None
    if dialect not in ("sqlite", "postgresql"):
        raise refused(name, value, "sqlite:///path/to/file or postgres://user:password@host/db")
    return url


def default_url(instance_path: str) -> str:
    return f"sqlite:///{Path(instance_path) / 'digits.sqlite3'}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_SECONDS})
        sa.event.listen(engine, "connect", _sqlite_connected)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,  # a connection the server dropped is replaced, not an error
        pool_size=4,  # gunicorn's threads per worker
        max_overflow=2,
        pool_timeout=CONNECT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_MS}",
        },
    )


def _sqlite_connected(dbapi_connection, _record) -> None:
    # SQLAlchemy's recipe: pysqlite's own BEGIN handling is off, the "begin" event sends it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at once: one that read first and then wrote
    # would fail at the write (SQLITE_BUSY) instead of waiting, when another wrote meanwhile.
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """The database's failures to answer as DatabaseUnavailable (a 503 for the API)."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as e:
        raise DatabaseUnavailable(f"database unavailable: {e.__class__.__name__}") from e


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with unavailable_as_storage_error(), engine.connect() as conn:
        yield conn


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed if the block ends normally, rolled back if it raises."""
    with unavailable_as_storage_error(), engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            yield conn


def write_or_confirm(
    engine: Engine, write: Callable[[], None], is_written: Callable[[Connection], bool]
) -> None:
    """`write()` (its own short transaction, for a row whose blobs are already in storage), with
    DatabaseUnavailable only when a read does not find the row written after all.

    A database that failed to answer may still have committed (PostgreSQL's connection lost
    after the COMMIT went out), and another writer may have added the same row meanwhile (a
    racing second answer that adopted the first one's feedback record). A caller that withdraws
    its blobs on DatabaseUnavailable then leaves no row pointing at blobs it deleted. What is
    left: a row that lands between this read and the withdrawal, or one committed by a database
    that stays down for the read too. Readers of blobs skip a missing one (the trainer, the
    gallery's image answers 404), and `flask db rebuild` drops the row.
    """
    try:
        write()
    except DatabaseUnavailable:
        if not _found(engine, is_written):
            raise


def _found(engine: Engine, is_written: Callable[[Connection], bool]) -> bool:
    try:
        with reading(engine) as conn:
            return is_written(conn)
    except DatabaseUnavailable:
        return False  # still down: it cannot tell, and most likely nothing landed


def answers(engine: Engine) -> bool:
    """Whether the database answers a trivial query (for /healthz)."""
    try:
        with reading(engine) as conn:
            conn.exec_driver_sql("SELECT 1")
    except DatabaseUnavailable:
        return False
    return True


# --- migrations ------------------------------------------------------------------------------


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["engine"] = engine
    return config


@functools.cache
def head() -> str:
    from alembic.script import ScriptDirectory

    config = alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head()


def revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with reading(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> None:
    from alembic import command

    with unavailable_as_storage_error():
        command.upgrade(alembic_config(engine), target)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def upgrade_embedded(engine: Engine) -> None:
    """Bring an SQLite database to the newest schema, once across the workers starting together."""
    database = engine.url.database
    if not database or database == ":memory:":
        upgrade(engine)
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    if revision(engine) == head():
        return  # every start after the first: one small read
    with file_lock(f"{database}.lock"):
        if revision(engine) != head():
            upgrade(engine)


# --- Flask ----------------------------------------------------------------------------------


def init_app(app) -> None:
    """The engine from the DATABASE_URL setting (digits/config.py: SQLite in the instance
    folder when unset), which is upgraded here when it is that embedded SQLite."""
    url = app.config.get("DATABASE_URL") or default_url(app.instance_path)
    engine = make_engine(check_url("DATABASE_URL", url))
    app.extensions["db"] = engine
    if is_sqlite(engine):
        upgrade_embedded(engine)


def engine_of(app) -> Engine:
    return app.extensions["db"]
