"""Faults: S3 goes away and comes back, processes are killed with -9, two trainers race.

What must hold, whatever happens:
- predictions keep answering; saves answer 503 with a clear message, never a false 201;
  a prediction made during an outage takes its feedback once storage is back;
- after a crash the last good model version is served and no version is corrupt;
- no acknowledged (201) drawing is ever lost; no published model update is ever lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import functions
from digits import dataset, predictions, registry
from digits.storage import LocalStorage, open_storage
from tests.helpers import (
    ROOT,
    S3Server,
    data_url,
    drawing_png,
    free_port,
    make_models_dir,
    start_gunicorn,
    tiny_bytes,
    worker_pids,
)

NO_LIMITS = {"RATE_LIMIT_SAVES": "off", "RATE_LIMIT_FEEDBACK": "off", "LOG_REQUESTS": "off"}


@pytest.fixture
def tiny_models(tmp_path: Path) -> Path:
    """The shipped-models folder with the tiny test nets as the "original" versions."""
    return make_models_dir(tmp_path / "models")


# --- (1) S3 stops mid-run and comes back -------------------------------------------------


def make_bucket(server: S3Server) -> None:
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="digits-faults")


@pytest.mark.s3
@pytest.mark.slow
def test_s3_outage_predictions_answer_saves_refuse_then_recover(
    s3_server, make_app, tiny_models, monkeypatch
):
    monkeypatch.setattr(predictions, "RETRY_MAX_SECONDS", 0.2)  # a prompt retry once S3 is back
    server = S3Server()  # our own, since we stop it; s3_server only sets the credentials
    server.start()
    try:
        make_bucket(server)
        app = make_app(
            STORAGE_URL="s3://digits-faults/run",
            AWS_ENDPOINT_URL=server.endpoint,
            MODELS_DIR=str(tiny_models),
            **NO_LIMITS,
        )
        client = app.test_client()
        drawing = {"imageBase64": data_url(drawing_png()), "digit": "7"}
        predict = {"imageBase64": drawing["imageBase64"]}
        assert client.post("/hook", json=drawing).status_code == 201
        assert client.get("/healthz").json["storage"] == "ok"
        answered = client.post("/api/predict", json=predict).json["id"]
        assert predictions.flush(timeout=10)  # its record is in S3, not only in the queue
        dropped = predictions.writer().dropped

        # Predictions keep flowing in the background while the server dies and returns.
        codes: list[int] = []
        stop = threading.Event()

        def keep_predicting() -> None:
            inner = app.test_client()
            while not stop.is_set():
                codes.append(inner.post("/api/predict", json=predict).status_code)
                time.sleep(0.02)  # a steady trickle: the record queue must not fill up

        predictor = threading.Thread(target=keep_predicting)
        predictor.start()
        try:
            server.stop()
            stopped = time.monotonic()
            made_during = client.post("/api/predict", json=predict).json["id"]
            refused = [client.post("/hook", json=drawing) for _ in range(5)]
            for response in refused:
                assert response.status_code == 503
                assert "nothing was saved" in response.json["error"]
            answer = {"id": answered, "digit": 7, "consent": True}
            late = client.post("/api/feedback", json=answer)
            assert late.status_code == 503, (late.status_code, late.json)
            health = client.get("/healthz")
            assert health.status_code == 200 and health.json["storage"] == "unavailable"
            # Longer than the old writer kept a batch (3 tries over about 3 s, then dropped).
            time.sleep(max(0.0, 4.5 - (time.monotonic() - stopped)))
            storage = app.extensions["storage"]
            assert predictions.load(storage, made_during)["id"] == made_during  # still queued
            during = len(codes)

            server.start()  # same port; moto forgets everything, so the bucket is made again
            make_bucket(server)
            acked = []
            for _ in range(5):
                response = client.post("/hook", json=drawing)
                assert response.status_code == 201
                acked.append(response.json["name"])
            assert client.get("/healthz").json["storage"] == "ok"
            # The prediction made during the outage takes its feedback now.
            answer = {"id": made_during, "digit": 7, "consent": False}
            took = client.post("/api/feedback", json=answer)
            assert took.status_code == 202, (took.status_code, took.json)
        finally:
            stop.set()
            predictor.join()
        assert during > 0 and set(codes) == {200}, set(codes)
        storage = open_storage("s3://digits-faults/run", server.endpoint)
        assert set(acked) <= set(dataset.names(storage))
        # Records queued during the outage are saved now; leave no backlog to other tests.
        assert predictions.flush(timeout=30)
        assert predictions.writer().dropped == dropped
        key = predictions.key_of(made_during)
        assert predictions.find_record(storage.get(key).data, made_during)["id"] == made_during
    finally:
        server.stop()


# --- (2a) the trainer is killed while it publishes ---------------------------------------

PUBLISHER = """
import os, sys, time
from digits import registry
from digits.storage import open_storage

storage = open_storage(sys.argv[1], sys.argv[2] or None)
tflite = {net: open(f"tests/fixtures/tiny-{net}-b.tflite", "rb").read() for net in registry.NETS}
if os.environ.get("CRASH_BEFORE_POINTER"):
    # The worst moment: every file of the new version written, the pointer not yet moved.
    def crash(*args, **kwargs):
        os.kill(os.getpid(), 9)
    registry.move_pointer = crash
while True:
    for net in registry.NETS:
        version = registry.publish(storage, net, tflite[net], b"keras", {"accuracy": 0.9}, by="t")
        print(net, version, flush=True)
"""


def run_publisher(url: str, endpoint: str = "", crash_before_pointer: bool = False, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if crash_before_pointer:
        env["CRASH_BEFORE_POINTER"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, url, endpoint],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def assert_registry_sound(storage, models_dir: Path) -> dict[str, str]:
    """The pointer parses, names complete versions that load in LiteRT, and the service
    started afresh (as after a restart) serves exactly those versions."""
    pointer, etag = registry.read_pointer(storage)
    assert etag is None or pointer, "the pointer exists but is not valid JSON"
    served = registry.current(storage)
    for net, version in served.items():
        functions.load_model(storage, str(models_dir), net, version)  # raises if corrupt
        for published in registry.published(storage, net):
            functions.load_model(storage, str(models_dir), net, published)
    service = functions.ModelService(storage, str(models_dir), watch=False)
    assert service.versions() == served
    return served


@pytest.mark.slow
def test_trainer_killed_between_files_and_pointer_keeps_last_good(tmp_path, tiny_models):
    storage = LocalStorage(tmp_path / "storage")
    good = registry.publish(storage, "fnn", tiny_bytes("fnn", "a"), b"k", {"accuracy": 0.8})
    child = run_publisher(str(storage.root), crash_before_pointer=True)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    served = assert_registry_sound(storage, tiny_models)
    assert served == {"fnn": good, "cnn": registry.ORIGINAL}
    # The crashed version is complete on disk but was never served: the next publish moves on.
    assert len(registry.published(storage, "fnn")) == 2


@pytest.mark.slow
def test_trainer_killed_at_random_moments_never_corrupts(tmp_path, tiny_models):
    storage = LocalStorage(tmp_path / "storage")
    rng = random.Random(7)
    seen: set[tuple[str, str]] = set()
    for _ in range(6):
        child = run_publisher(str(storage.root))
        # Kill after a random number of publishes, at a random point inside one.
        first = child.stdout.readline()
        assert first, child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        served = assert_registry_sound(storage, tiny_models)
        published = {(net, v) for net in registry.NETS for v in registry.published(storage, net)}
        assert seen <= published, "a published version disappeared"
        seen = published
    assert all(v != registry.ORIGINAL for v in served.values())


# --- (2b) a web worker is killed under load ----------------------------------------------


def post(port: int, path: str, payload: dict, timeout: float = 10.0) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_web_worker_killed_under_load_loses_no_acknowledged_save(tmp_path, tiny_models):
    storage = LocalStorage(tmp_path / "storage")
    version = registry.publish(storage, "cnn", tiny_bytes("cnn", "b"), b"k", {"accuracy": 0.9})
    port = free_port()
    server = start_gunicorn(port, storage.root, tiny_models, RATE_LIMIT_SAVES="off")
    try:
        wait_until(lambda: len(worker_pids(server.pid)) == 2 and get(port, "/healthz"))
        drawing = {"imageBase64": data_url(drawing_png()), "digit": "5"}
        acked: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def keep_saving() -> None:
            while not stop.is_set():
                try:
                    status, body = post(port, "/hook", drawing)
                except OSError as e:  # the killed worker's connections: not acknowledged
                    failures.append(type(e).__name__)
                    continue
                if status == 201:
                    acked.append(body["name"])
                else:
                    failures.append(str(status))

        savers = [threading.Thread(target=keep_saving) for _ in range(4)]
        for thread in savers:
            thread.start()
        time.sleep(1.0)
        victim = worker_pids(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(set(worker_pids(server.pid)) - {victim}) == 2)
        time.sleep(1.0)
        stop.set()
        for thread in savers:
            thread.join()

        assert len(acked) > 20, (len(acked), failures[:5])
        assert set(acked) <= set(dataset.names(storage)), "an acknowledged save was lost"
        assert set(failures) <= {"RemoteDisconnected", "ConnectionResetError", "URLError"}
        # The respawned worker serves the last good version, and predicts again.
        for _ in range(6):
            assert get(port, "/healthz")["models"]["cnn"] == version
        status, _ = post(port, "/api/predict", {"imageBase64": drawing["imageBase64"]})
        assert status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


# --- (3) two trainers publish at once ----------------------------------------------------

RACER = """
import sys
from digits import registry
from digits.storage import PreconditionFailed, open_storage

storage = open_storage(sys.argv[1], sys.argv[2] or None)
tflite = open("tests/fixtures/tiny-fnn-b.tflite", "rb").read()
wins = 0
while wins < int(sys.argv[3]):
    parent = registry.current(storage)["fnn"]
    try:
        version = registry.publish(storage, "fnn", tflite, b"k", {}, expected_version=parent)
    except PreconditionFailed:
        continue  # the other trainer got in first: retrain on top of its version
    print(parent, version, flush=True)
    wins += 1
"""


def race(url: str, endpoint: str, wins: int) -> list[tuple[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", RACER, url, endpoint, str(wins)]
    racers = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    edges = []
    for racer in racers:
        out, _ = racer.communicate(timeout=120)
        assert racer.returncode == 0
        edges += [tuple(line.split()) for line in out.splitlines()]
    return edges


def assert_one_unbroken_chain(edges: list[tuple[str, str]], storage) -> None:
    """Every successful publish built on the one before it: a single chain, no fork."""
    parents = [parent for parent, _ in edges]
    assert len(parents) == len(set(parents)), "two publishes built on the same version"
    following = dict(edges)
    version, chain = registry.ORIGINAL, []
    while version in following:
        version = following[version]
        chain.append(version)
    assert len(chain) == len(edges), "a successful publish is not in the chain"
    assert registry.current(storage)["fnn"] == chain[-1]
    assert set(registry.published(storage, "fnn")) == set(chain), "a loser's files were kept"


@pytest.mark.slow
def test_two_trainers_lose_no_update_local(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    edges = race(str(storage.root), "", wins=8)
    assert len(edges) == 16
    assert_one_unbroken_chain(edges, storage)


@pytest.mark.s3
@pytest.mark.slow
def test_two_trainers_lose_no_update_s3(s3_server, s3_url):
    edges = race(s3_url, s3_server.endpoint, wins=5)
    assert len(edges) == 10
    assert_one_unbroken_chain(edges, open_storage(s3_url, s3_server.endpoint))


# --- (4) the database stops mid-run and comes back ----------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_database_outage_saves_nothing_answers_503_then_recovers(
    postgres_server, make_app, tmp_path, tiny_models
):
    from digits import db
    from tests.helpers import PostgresServer

    server = PostgresServer()  # our own, since we stop it; postgres_server skips without one
    server.start()
    try:
        app = make_app(DATABASE_URL=server.new_database(), MODELS_DIR=str(tiny_models), **NO_LIMITS)
        db.upgrade(db.engine_of(app))
        client, storage = app.test_client(), app.extensions["storage"]
        drawing = {"imageBase64": data_url(drawing_png()), "digit": "7"}
        predict = {"imageBase64": drawing["imageBase64"]}
        assert client.post("/hook", json=drawing).status_code == 201
        ids = [client.post("/api/predict", json=predict).json["id"] for _ in range(2)]
        answer = {"id": ids[0], "digit": 7, "consent": True}
        assert client.post("/api/feedback", json=answer).status_code == 202
        feedback_flush()
        before = sorted(storage.list())

        server.pause()
        assert client.post("/api/predict", json=predict).status_code == 200  # no database
        refused = client.post("/hook", json=drawing)
        assert refused.status_code == 503 and "nothing was saved" in refused.json["error"]
        late = client.post("/api/feedback", json={"id": ids[1], "digit": 7, "consent": True})
        assert late.status_code == 503 and "nothing was saved" in late.json["error"]
        for reading in ("/api/stats", "/api/dataset/counts", "/api/dataset"):
            assert client.get(reading).status_code == 503, reading  # not an empty answer
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json["database"] == "unavailable"
        predictions.flush(timeout=10)
        saved = sorted(k for k in storage.list() if not k.startswith("predictions/"))
        assert saved == sorted(k for k in before if not k.startswith("predictions/"))

        server.resume()
        assert client.get("/healthz").json["database"] == "ok"
        assert client.post("/hook", json=drawing).status_code == 201
        late = client.post("/api/feedback", json={"id": ids[1], "digit": 7, "consent": True})
        assert late.status_code == 202  # the answer refused in the outage is taken now
        feedback_flush()
        assert client.get("/api/dataset/counts").json["total"] == 4  # 2 saves, 2 copies
        assert client.get("/api/stats").json["totals"]["feedback"] == 2
    finally:
        server.stop()


def feedback_flush() -> None:
    from digits import feedback

    feedback.flush()
