"""Fixtures only, in the style of Flask's tutorial: app, client, runner, plus a real S3 server.
The helpers they use, and that tests share, are in tests/helpers.py."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from digits import feedback, predictions
from digits.storage import LocalStorage, open_storage
from tests.helpers import S3Server, data_url, drawing_png, fake_prediction, new_app


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture(autouse=True)
def database_file(tmp_path: Path, monkeypatch) -> str:
    """Each test's own embedded database, made and upgraded by create_app: through the
    environment, so every app a test makes (and any server it starts) uses it, never the
    repository's instance/ folder."""
    url = f"sqlite:///{tmp_path / 'records' / 'digits.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def make_app(storage_dir: Path):
    """make_app(**settings): the app with TESTING on, its storage in storage_dir unless given."""

    def make(**config):
        return new_app(storage_dir, **config)

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def s3_server():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = S3Server()
    server.start()
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="digits-test")
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server) -> str:
    """A fresh prefix in the test bucket, so tests never see each other's objects."""
    return f"s3://digits-test/run-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_app(s3_server, s3_url):
    return new_app(s3_url, AWS_ENDPOINT_URL=s3_server.endpoint)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for the session (tests/helpers.py), or a skip that
    says why there is none."""
    from tests import helpers

    missing = helpers.postgres_missing()
    if missing:
        pytest.skip(missing)
    server = helpers.PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """The same records tests, once on SQLite and once on a real PostgreSQL server: a new,
    empty database each time."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.sqlite3'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def engine(database_url):
    """An engine on a new database at the newest schema."""
    from digits import db

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    """The same storage tests, once on a local folder and once on S3 over HTTP."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return open_storage(request.getfixturevalue("s3_url"), server.endpoint)


@pytest.fixture
def drawing_url() -> str:
    return data_url(drawing_png())


@pytest.fixture
def made(monkeypatch) -> dict:
    """Predictions by id, served through predictions.load (the serving engineer's API)."""
    known: dict[str, dict] = {}

    def load(storage, pid):
        if pid not in known:
            raise feedback.NotFound(pid)
        return known[pid]

    monkeypatch.setattr(predictions, "load", load)
    known["p1"] = fake_prediction("p1", fnn=3, cnn=3)
    known["p2"] = fake_prediction("p2", fnn=5, cnn=7)
    known["blank"] = fake_prediction("blank", empty=True)
    return known
