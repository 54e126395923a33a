"""POST /api/predict, prediction records, model routes and CLI, hot swap, and no TensorFlow."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

import functions
from digits import predictions, registry
from digits.storage import LocalStorage, NotFound, StorageUnavailable
from tests.helpers import (
    ARABIC_INDIC,
    ROOT,
    data_url,
    documented_schema,
    drawing_png,
    free_port,
    make_models_dir,
    start_gunicorn,
    tiny_bytes,
    unservable,
    wait_for_port,
    worker_pids,
)


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return make_models_dir(tmp_path / "models")


@pytest.fixture
def model_app(make_app, models_dir):
    return make_app(MODELS_DIR=str(models_dir), ADMIN_TOKEN="secret", LOG_REQUESTS="off")


@pytest.fixture
def mclient(model_app):
    return model_app.test_client()


def blank_png(mode: str = "RGB") -> bytes:
    colour = (255, 255, 255, 0) if mode == "RGBA" else "white"
    buffer = io.BytesIO()
    Image.new(mode, (200, 200), colour).save(buffer, "PNG")
    return buffer.getvalue()


def post(client, png: bytes):
    return client.post("/api/predict", json={"imageBase64": data_url(png)})


def check_net(body: dict) -> None:
    probabilities = body["probabilities"]
    assert len(probabilities) == 10 and all(isinstance(p, float) for p in probabilities)
    assert abs(sum(probabilities) - 1.0) < 1e-4
    assert body["digit"] == int(np.argmax(probabilities))


def test_a_drawing_gets_both_nets(mclient):
    response = post(mclient, drawing_png())
    assert response.status_code == 200
    body = response.get_json()
    assert body["empty"] is False
    for net in ("fnn", "cnn"):
        check_net(body[net])
        assert body[net]["version"] == "original"
        assert body["versions"][net] == {"current": "original", "original": "original"}
    assert "original" not in body  # nothing differs from the shipped nets
    preview = base64.b64decode(body["preview"].removeprefix("data:image/png;base64,"))
    assert Image.open(io.BytesIO(preview)).size == (28, 28)


def test_transparent_canvas_gives_the_same_answer(mclient):
    white = post(mclient, drawing_png()).get_json()
    clear = post(mclient, drawing_png(mode="RGBA")).get_json()
    assert clear["empty"] is False
    for net in ("fnn", "cnn"):
        assert clear[net]["probabilities"] == white[net]["probabilities"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_empty_canvas_runs_no_model(mclient, mode):
    body = post(mclient, blank_png(mode)).get_json()
    assert body["empty"] is True
    for net in ("fnn", "cnn"):
        assert body[net] == {"digit": None, "probabilities": None, "version": "original"}


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"imageBase64": ""},
        {"imageBase64": 7},
        {"imageBase64": "data:image/png;base64,!!!"},
        {"imageBase64": "data:image/png;base64," + base64.b64encode(b"GIF89a").decode()},
        {"imageBase64": "data:image/jpeg;base64,AAAA"},
    ],
)
def test_bad_input_is_a_400_json(mclient, payload):
    response = mclient.post("/api/predict", json=payload)
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_wrong_size_and_bad_bodies(mclient):
    buffer = io.BytesIO()
    Image.new("RGB", (100, 200), "white").save(buffer, "PNG")
    assert post(mclient, buffer.getvalue()).status_code == 400
    not_object = mclient.post("/api/predict", data="[1]", content_type="application/json")
    assert not_object.status_code == 400
    text = mclient.post("/api/predict", data="x", content_type="text/plain")
    assert text.status_code == 415 and text.get_json()["error"]
    big = mclient.post(
        "/api/predict", data="x" * (1024 * 1024 + 1), content_type="application/json"
    )
    assert big.status_code == 413 and big.get_json()["error"]


def test_a_form_works_too(mclient):
    form = {"imageBase64": data_url(drawing_png())}
    assert mclient.post("/api/predict", data=form).status_code == 200


def test_the_record_is_found_by_id_before_and_after_it_is_saved(mclient, model_app):
    png = drawing_png()
    body = post(mclient, png).get_json()
    storage = model_app.extensions["storage"]
    queued = predictions.load(storage, body["id"])  # found whether queued or already saved
    assert predictions.flush()
    key = predictions.key_of(body["id"])
    assert key.startswith("predictions/") and key.endswith(".jsonl")
    stored = predictions.find_record(storage.get(key).data, body["id"])
    for record in (queued, stored):
        assert record["id"] == body["id"]
        assert record["versions"] == {"fnn": "original", "cnn": "original"}
        assert record["cnn"]["probabilities"] == body["cnn"]["probabilities"]
        assert record["empty"] is False
        assert base64.b64decode(record["image"]) == png
    assert predictions.load(storage, body["id"]) == stored


def test_unknown_and_invalid_ids_are_not_found(model_app):
    storage = model_app.extensions["storage"]
    good = predictions.new_id()
    # Digits from other scripts match a plain \d, and $ matches before a final newline.
    unicode_digits = "p" + good[1:22].translate(ARABIC_INDIC) + good[22:]
    for pid in (good, "../../etc/passwd", "", None, unicode_digits, good + "\n"):
        with pytest.raises(NotFound):
            predictions.load(storage, pid)


def test_ids_are_unique_and_sortable():
    ids = [predictions.new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[:22] for i in ids] == sorted(i[:22] for i in ids)


def test_a_batch_is_one_object_and_each_record_is_found_in_it(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    writer = predictions.Writer()
    records = [writer.submit(storage, {"n": n}) for n in range(10)]
    assert [r["n"] for r in records] == list(range(10)) and len({r["id"] for r in records}) == 10
    assert writer.flush()
    assert writer.written == 10
    (key,) = storage.list("predictions/")  # one object for all ten
    assert {predictions.key_of(r["id"]) for r in records} == {key}
    for record in records:
        assert predictions.find_record(storage.get(key).data, record["id"]) == record
    with pytest.raises(NotFound):
        predictions.find_record(storage.get(key).data, predictions.new_id())


def test_records_from_before_batching_are_still_found(tmp_path):
    """One object per record, id without a record part: feedback across a deploy still works."""
    storage = LocalStorage(tmp_path / "s")
    old = {"id": "p20261120T101010123456-0a1b2c3d", "empty": True}
    storage.put(
        "predictions/2026-11-20/p20261120T101010123456-0a1b2c3d.json", json.dumps(old).encode()
    )
    assert predictions.load(storage, old["id"]) == old


def test_batches_go_to_their_own_storage(tmp_path):
    first, second = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    writer = predictions.Writer()
    one = writer.submit(first, {"n": 1})
    two = writer.submit(second, {"n": 2})
    assert writer.flush()
    assert predictions.find_record(first.get(predictions.key_of(one["id"])).data, one["id"])
    assert predictions.find_record(second.get(predictions.key_of(two["id"])).data, two["id"])


def found(storage, prediction_id: str) -> bool:
    try:
        return predictions.load(storage, prediction_id)["id"] == prediction_id
    except NotFound:
        return False


class SlowStorage(LocalStorage):
    def __init__(self, root, gate: threading.Event) -> None:
        super().__init__(root)
        self.gate = gate

    def put(self, key, data, **kwargs):
        self.gate.wait(10)
        return super().put(key, data, **kwargs)


def test_a_full_queue_drops_instead_of_blocking(tmp_path):
    gate = threading.Event()
    storage = SlowStorage(tmp_path / "s", gate)
    writer = predictions.Writer(max_pending=3)
    started = time.perf_counter()
    records = [writer.submit(storage, {"n": n}) for n in range(10)]
    assert time.perf_counter() - started < 2  # never waits for the slow storage (10 s)
    assert len({r["id"] for r in records}) == 10  # every answer still has an id
    # At most 3 queued, the batch being saved included.
    assert 0 < writer.dropped < 10
    gate.set()
    assert writer.flush()
    saved = [r for r in records if found(storage, r["id"])]
    assert len(saved) == writer.written == 10 - writer.dropped


class DownStorage(LocalStorage):
    """Storage whose writes fail while `down` is set, counting the failed writes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.down = True
        self.failed_puts = 0

    def put(self, key, data, **kwargs):
        if self.down:
            self.failed_puts += 1
            raise StorageUnavailable("S3 is down")
        return super().put(key, data, **kwargs)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(predictions, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(predictions, "RETRY_MAX_SECONDS", 0.04)
    monkeypatch.setattr(predictions, "WAKE_SECONDS", 0.02)  # when the writer looks for due retries


def test_an_outage_keeps_records_queued_and_found_until_storage_is_back(
    tmp_path, monkeypatch, quick_retries, caplog
):
    storage = DownStorage(tmp_path / "s")
    writer = predictions.Writer()
    monkeypatch.setattr(predictions, "_WRITER", writer)  # what `load` looks in
    with caplog.at_level(logging.WARNING, logger="digits.predictions"):
        records = [writer.submit(storage, {"n": n}) for n in range(150)]  # three batches
        wait_until(lambda: storage.failed_puts >= 5)  # the old writer gave up after 3 tries
        assert all(found(storage, r["id"]) for r in records)  # during the outage, from the queue
        started = time.monotonic()
        assert not writer.flush(0.2)  # still bounded while storage is away
        assert time.monotonic() - started < 1
        storage.down = False
        assert writer.flush(5)
    assert writer.written == 150 and writer.dropped == 0
    for record in records:  # from storage now, not from the queue
        assert (
            predictions.find_record(
                storage.get(predictions.key_of(record["id"])).data, record["id"]
            )
            == record
        )
        assert predictions.load(storage, record["id"]) == record
    # The first failure is logged, then at most once a minute, not at every try of every batch.
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("not saved" in w for w in warnings) == 1, warnings
    assert sum("saved again" in w for w in warnings) == 1, warnings


def test_a_full_queue_drops_the_oldest_records_during_an_outage(tmp_path, monkeypatch):
    monkeypatch.setattr(predictions, "RETRY_SECONDS", 1.0)  # no retry while the queue fills
    storage = DownStorage(tmp_path / "s")
    writer = predictions.Writer(max_pending=100)
    monkeypatch.setattr(predictions, "_WRITER", writer)
    first = writer.submit(storage, {"n": 0})
    wait_until(lambda: storage.failed_puts == 1)
    records = [first, *(writer.submit(storage, {"n": n}) for n in range(1, 151))]
    assert writer.dropped == 51  # the queue holds 100 records, the failed batch's included
    kept, gone = records[51:], records[:51]
    assert all(found(storage, r["id"]) for r in kept)
    assert not any(found(storage, r["id"]) for r in gone)
    storage.down = False
    assert writer.flush(10)
    assert writer.written == 100 and writer.dropped == 51
    assert [r for r in records if found(storage, r["id"])] == kept  # from storage now


def test_a_batch_that_fails_for_a_bug_is_dropped_not_retried(tmp_path, quick_retries):
    class BuggyStorage(LocalStorage):
        def put(self, key, data, **kwargs):
            raise RuntimeError("a bug")

    storage = BuggyStorage(tmp_path / "s")
    writer = predictions.Writer()
    for n in range(3):
        writer.submit(storage, {"n": n})
    assert writer.flush(5)
    assert writer.dropped == 3 and writer.written == 0


def test_retries_back_off_up_to_a_cap():
    outage = predictions.Outage()
    delays = []
    for _ in range(2000):  # hours of outage: the delay neither grows past the cap nor overflows
        outage.failed(0.0)
        delays.append(outage.retry_at)
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0] and set(delays[4:]) == {4.0}


def test_healthz_and_models_info(mclient):
    assert mclient.get("/healthz").get_json()["models"] == {"fnn": "original", "cnn": "original"}
    nets = mclient.get("/api/models").get_json()["nets"]
    assert nets["cnn"]["current"]["version"] == "original"
    assert nets["cnn"]["original"]["metrics"]["mnist_test_accuracy"] == 0.5
    assert nets["fnn"]["served"] == "original"


def test_missing_models_answer_503(make_app):
    app = make_app(MODELS_DIR="/nope")
    client = app.test_client()
    response = post(client, drawing_png())
    assert response.status_code == 503 and response.get_json()["error"]
    assert client.get("/healthz").get_json()["models"] == {"fnn": None, "cnn": None}


def publish_b(storage, net: str = "cnn") -> str:
    return registry.publish(
        storage, net, tiny_bytes(net, "b"), b"keras", {"mnist_test_accuracy": 1}
    )


def test_a_new_version_is_shown_beside_the_original(mclient, model_app):
    version = publish_b(model_app.extensions["storage"])
    model_app.extensions["models"].refresh()
    body = post(mclient, drawing_png()).get_json()
    assert body["cnn"]["version"] == version
    assert body["versions"]["cnn"] == {"current": version, "original": "original"}
    assert body["original"]["cnn"]["version"] == "original"
    check_net(body["original"]["cnn"])
    assert body["original"]["cnn"]["probabilities"] != body["cnn"]["probabilities"]
    assert body["original"]["fnn"]["probabilities"] == body["fnn"]["probabilities"]


def auth(token: str = "secret") -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_rollback_route(mclient, model_app):
    storage = model_app.extensions["storage"]
    first = publish_b(storage)
    publish_b(storage)
    url = "/api/models/rollback"
    assert mclient.post(url, json={"net": "cnn", "version": first}).status_code == 401
    assert (
        mclient.post(url, json={"net": "cnn", "version": first}, headers=auth("no")).status_code
        == 403
    )
    response = mclient.post(url, json={"net": "cnn", "version": first}, headers=auth())
    assert response.status_code == 200
    assert response.get_json()["pointer"]["cnn"] == first
    assert registry.current(storage)["cnn"] == first
    assert model_app.extensions["models"].versions()["cnn"] in (first, "original")
    unknown = {"net": "cnn", "version": "20200101T000000Z-abcdef"}
    assert mclient.post(url, json=unknown, headers=auth()).status_code == 404
    for bad in ({"net": "rnn", "version": first}, {"net": "cnn", "version": "../x"}, {}):
        response = mclient.post(url, json=bad, headers=auth())
        assert response.status_code == 400 and response.get_json()["error"]


@pytest.mark.parametrize("tflite", [None, b"not a tflite"], ids=["missing", "garbage"])
def test_rollback_route_refuses_a_version_that_cannot_be_served(mclient, model_app, tflite):
    storage = model_app.extensions["storage"]
    served = publish_b(storage)
    broken = unservable(storage, "cnn", tflite)
    response = mclient.post(
        "/api/models/rollback", json={"net": "cnn", "version": broken}, headers=auth()
    )
    assert response.status_code == 422
    assert broken in response.get_json()["error"]
    assert "not rolled back" in response.get_json()["error"]
    assert registry.current(storage)["cnn"] == served
    document = mclient.get("/api/openapi.json").get_json()
    schema = documented_schema(document, "/api/models/rollback", "post", 422)
    jsonschema.Draft202012Validator(schema).validate(response.get_json())


@pytest.mark.parametrize("tflite", [None, b"not a tflite"], ids=["missing", "garbage"])
def test_models_cli_refuses_a_version_that_cannot_be_served(model_app, tflite):
    storage = model_app.extensions["storage"]
    served = publish_b(storage, "fnn")
    broken = unservable(storage, "fnn", tflite)
    result = model_app.test_cli_runner().invoke(args=["models", "rollback", broken])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: fnn {broken}: ")
    assert result.output.endswith("; not rolled back\n") and result.output.count("\n") == 1
    assert registry.current(storage)["fnn"] == served


def test_rollback_swaps_this_worker_at_once(mclient, model_app):
    storage = model_app.extensions["storage"]
    post(mclient, drawing_png())  # load the models
    publish_b(storage)
    model_app.extensions["models"].refresh()
    rolled = mclient.post(
        "/api/models/rollback", json={"net": "cnn", "version": "original"}, headers=auth()
    )
    assert rolled.status_code == 200
    assert post(mclient, drawing_png()).get_json()["cnn"]["version"] == "original"


def test_models_cli(model_app):
    runner = model_app.test_cli_runner()
    version = publish_b(model_app.extensions["storage"], "fnn")
    listed = runner.invoke(args=["models", "list"])
    assert listed.exit_code == 0
    line = next(line for line in listed.output.splitlines() if version in line)
    assert line.startswith("*") and "fnn" in line and "1.0000" in line
    back = runner.invoke(args=["models", "rollback", "original", "--net", "fnn"])
    assert back.exit_code == 0, back.output
    assert registry.current(model_app.extensions["storage"])["fnn"] == "original"
    again = runner.invoke(args=["models", "rollback", version])  # the net is found from VERSION
    assert again.exit_code == 0 and "fnn: now serving" in again.output
    missing = runner.invoke(args=["models", "rollback", "20200101T000000Z-abcdef"])
    assert missing.exit_code != 0 and "no net has" in missing.output


def test_hot_swap_under_load(make_app, models_dir):
    app = make_app(
        MODELS_DIR=str(models_dir), MODEL_WATCH=True, MODEL_POLL_SECONDS=0.2, LOG_REQUESTS="off"
    )
    url = data_url(drawing_png())
    statuses: list[int] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.post("/api/predict", json={"imageBase64": url})
            statuses.append(response.status_code)
            seen.add(response.get_json()["fnn"]["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    version = publish_b(app.extensions["storage"], "fnn")
    deadline = time.monotonic() + 5
    while version not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert version in seen and "original" in seen
    assert statuses and set(statuses) == {200}


NO_TF_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{root!r}]
    from main import create_app
    from tests.helpers import data_url, drawing_png
    app = create_app({{"TESTING": True, "STORAGE_URL": {storage!r}, "MODELS_DIR": {models!r}}})
    body = {{"imageBase64": data_url(drawing_png())}}
    response = app.test_client().post("/api/predict", json=body)
    assert response.status_code == 200, response.data
    import digits.predictions
    assert digits.predictions.flush()
    print("tensorflow" in sys.modules, "keras" in sys.modules)
    """
)


def test_the_web_process_never_imports_tensorflow(tmp_path, models_dir):
    script = NO_TF_SCRIPT.format(
        root=str(ROOT), storage=str(tmp_path / "s"), models=str(models_dir)
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]


def test_a_broken_published_version_is_not_swapped_in(mclient, model_app):
    """Serving checks each version in LiteRT before swapping, whatever the registry holds."""
    storage = model_app.extensions["storage"]
    post(mclient, drawing_png())  # load the models
    version = registry.new_version()
    for name, data in (
        ("model.tflite", b"garbage"),
        ("model.keras", b"k"),
        ("metrics.json", b"{}"),
    ):
        storage.put(registry.version_key("fnn", version, name), data)
    registry.move_pointer(storage, "fnn", version)
    model_app.extensions["models"].refresh()
    response = post(mclient, drawing_png())
    assert response.status_code == 200
    assert response.get_json()["fnn"]["version"] == "original"


class FlakyStorage(LocalStorage):
    """Storage whose reads fail while `down` is set."""

    down = False

    def get(self, key):
        if self.down:
            raise StorageUnavailable("down")
        return super().get(key)


def test_storage_errors_keep_the_current_models(tmp_path, models_dir):
    storage = FlakyStorage(tmp_path / "s")
    version = publish_b(storage)
    storage.down = True
    service = functions.ModelService(storage, str(models_dir), watch=False)
    assert service.versions() == {"fnn": "original", "cnn": "original"}  # pointer unreadable
    with pytest.raises(StorageUnavailable):
        service.refresh()  # the watcher logs this and tries again
    storage.down = False
    service.refresh()
    assert service.versions()["cnn"] == version


def test_the_writer_survives_a_record_it_cannot_save(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    writer = predictions.Writer()
    bad = writer.submit(storage, {"bad": {1, 2}})  # not JSON
    good = writer.submit(storage, {"good": True})
    assert writer.flush()
    assert writer.dropped == 1 and writer.written == 1
    assert predictions.load(storage, good["id"]) == good
    with pytest.raises(NotFound):
        predictions.load(storage, bad["id"])


def healthz_versions(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return json.loads(response.read())["models"]


def concurrent_versions(port: int) -> set[str]:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: healthz_versions(port)["fnn"], range(64)))
    return set(answers)


@pytest.mark.slow
def test_every_gunicorn_worker_swaps_within_5_seconds(tmp_path, models_dir):
    """Two forked workers, each with its own watcher: all of them serve the new version."""
    port = free_port()
    server = start_gunicorn(port, tmp_path / "s", models_dir, MODEL_POLL_SECONDS="0.5")
    try:
        wait_for_port(port)
        # Concurrent requests reach both workers, so both load their models and watchers.
        assert concurrent_versions(port) == {"original"}
        version = publish_b(LocalStorage(tmp_path / "s"), "fnn")
        published = time.monotonic()
        time.sleep(2.5)  # four polls of 0.5 s, well inside the 5 s promise
        assert concurrent_versions(port) == {version}
        assert time.monotonic() - published < 5
    finally:
        server.terminate()
        server.wait(20)


def workers_with_litert(master_pid: int) -> int:
    """How many of gunicorn's workers have LiteRT loaded (it is imported with the first net)."""
    maps = [Path(f"/proc/{pid}/maps") for pid in worker_pids(master_pid)]
    return sum("litert" in m.read_text() for m in maps if m.exists())


@pytest.mark.slow
def test_gunicorn_workers_load_the_nets_before_their_first_request(tmp_path, models_dir):
    """gunicorn.conf.py's post_worker_init: a recycled worker must not make callers wait."""
    server = start_gunicorn(free_port(), tmp_path / "s", models_dir)
    try:
        deadline = time.monotonic() + 30
        while workers_with_litert(server.pid) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers_with_litert(server.pid) == 2  # and not one request was sent
    finally:
        server.terminate()
        server.wait(20)


def test_records_queued_at_exit_are_still_saved(tmp_path):
    """The at-exit flush must be able to write: nothing queued is lost on a clean shutdown."""
    import subprocess
    import sys

    code = (
        "from digits import predictions; from digits.storage import LocalStorage; "
        f"s = LocalStorage({str(tmp_path)!r}); "
        "ids = [predictions.submit(s, {'n': i})['id'] for i in range(100)]; "
        "print(' '.join(ids))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    storage = LocalStorage(tmp_path)
    ids = result.stdout.split()
    assert len(ids) == 100 and all(found(storage, i) for i in ids)


def test_exiting_during_an_outage_says_how_many_records_were_not_saved(tmp_path):
    """The at-exit flush is bounded (5 s); what it could not save is logged, not lost silently."""
    import subprocess
    import sys

    (tmp_path / "file").write_text("a storage folder that is a file: every write fails")
    code = (
        "import logging; logging.basicConfig(); "
        "from digits import predictions; from digits.storage import LocalStorage; "
        f"s = LocalStorage({str(tmp_path / 'file')!r}); "
        "[predictions.submit(s, {'n': i}) for i in range(3)]"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "exiting with 3 predictions unsaved" in result.stderr, result.stderr
