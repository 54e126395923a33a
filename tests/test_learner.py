"""The trainer: `--once` learns corrections and publishes; worse candidates are rejected;
crashes neither lose nor double-learn a sample. Tiny nets trained on the 200-digit fixture."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from digits import (  # noqa: E402
    dataset,
    db,
    feedback,
    learner,
    mnist,
    predictions,
    progress,
    records,
    registry,
    strokes,
    training,
)
from digits.storage import LocalStorage  # noqa: E402
from tests.helpers import data_url, drawing_png, free_port, wait_for_port  # noqa: E402

keras = pytest.importorskip("keras")
SMALL = {"copies": 2, "replay_min": 64, "batch_size": 32, "min_user_heldout": 1000}
SMALL |= {"epochs": {"fnn": 1, "cnn": 1}, "learning_rate": {"fnn": 1e-4, "cnn": 1e-4}}


def tiny(net: str):
    from keras import layers

    body = [layers.Flatten(), layers.Dense(16, activation="relu")]
    if net == "cnn":
        body = [layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), *body]
    return keras.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(10, "softmax")])


@pytest.fixture(scope="session")
def reference() -> learner.Reference:
    """Fixture digits through to_mnist: the first 100 for replay, the last 100 as the test set;
    30 held-out real writers' digits for the card."""
    images, labels = mnist.load_fixture()
    x, y = mnist.normalise(images), labels.astype(np.int64)
    _, held = strokes.split_by_writer(strokes.load("pendigits"))
    real = strokes.to_inputs(held.subset(np.arange(len(held)) < 30), np.random.default_rng(0))
    return learner.Reference(x[:100], y[:100], x[100:], y[100:], *real)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, reference) -> Path:
    out = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    for net in ("fnn", "cnn"):
        model = training.compile_model(tiny(net), 3e-3)
        model.fit(reference.train_x[..., None], reference.train_y, epochs=30, verbose=0)
        model.save(out / f"{net}.keras")
        (out / f"{net}.tflite").write_bytes(training.export_tflite(model))
        (out / f"{net}.json").write_text(json.dumps({"mnist_test_accuracy": None}))
    return out


@pytest.fixture
def min_new() -> int:
    """TRAINER_MIN_NEW: 1, so a few corrections make a version (a test may parametrize it)."""
    return 1


@pytest.fixture
def app(make_app, models_dir, reference, monkeypatch, min_new):
    monkeypatch.setattr(learner, "load_reference", lambda: reference)
    monkeypatch.setattr(learner, "_shipped", {})
    monkeypatch.setattr(learner, "_scores", {})
    return make_app(
        MODELS_DIR=str(models_dir),
        TRAINER=SMALL,
        RATE_LIMIT_FEEDBACK="off",
        TRAINER_MIN_NEW=min_new,
    )


def canvas_png(digit28: np.ndarray) -> bytes:
    """An MNIST digit as the page would send it: black ink on a white 200x200 canvas."""
    image = Image.fromarray(255 - digit28).resize((200, 200), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def output(digit: int, confidence: float = 0.5) -> dict:
    probabilities = [(1 - confidence) / 9] * 10
    probabilities[digit] = confidence
    return {"digit": digit, "probabilities": probabilities}


@pytest.fixture
def corrections(app, monkeypatch) -> list[str]:
    """Six consented corrections of fixture digits, on ids outside the held-out share."""
    images, labels = mnist.load_fixture()
    ids = [f"pred{i}" for i in range(40) if not training.is_held_out(f"pred{i}")][:6]
    known = {}
    for n, pid in enumerate(ids):
        label = int(labels[n])
        known[pid] = {
            "id": pid,
            "created": "2026-11-24T10:00:00+00:00",
            "versions": {"fnn": "original", "cnn": "original"},
            "fnn": output((label + 1) % 10),
            "cnn": output((label + 2) % 10),
            "empty": False,
            "image": base64.b64encode(canvas_png(images[n])).decode(),
        }
    monkeypatch.setattr(predictions, "load", lambda storage, pid: known[pid])
    client = app.test_client()
    for n, pid in enumerate(ids):
        body = {"id": pid, "digit": int(labels[n]), "consent": True}
        assert client.post("/api/feedback", json=body).status_code == 202
    return ids


def run_trainer(app, *args: str):
    return app.test_cli_runner().invoke(args=["trainer", "--once", *args])


def marker(app, net: str, pid: str) -> dict:
    storage = app.extensions["storage"]
    return json.loads(storage.get(learner.marker_key(net, pid)).data)


def test_once_on_a_storage_folder_that_is_a_file_is_one_line(
    tmp_path, make_app, reference, monkeypatch
):
    monkeypatch.setattr(learner, "load_reference", lambda: reference)
    (tmp_path / "file").write_text("not a folder")
    result = run_trainer(make_app(STORAGE_URL=str(tmp_path / "file")))
    assert result.exit_code == 1  # not "nothing to learn"
    assert "Error: storage is unavailable" in result.output


def test_once_learns_corrections_and_publishes(app, corrections, caplog):
    caplog.set_level(logging.INFO)
    result = run_trainer(app, "--margin", "5")
    assert result.exit_code == 0, result.output
    # The export's notices (the SavedModel's endpoints, "Assets written to") are not shown.
    assert "Saved artifact" not in result.output
    notices = [r for r in caplog.records if r.name == "tensorflow" and r.levelno < logging.WARNING]
    assert [r.getMessage() for r in notices] == []
    storage = app.extensions["storage"]
    current = registry.current(storage)
    for net in ("fnn", "cnn"):
        assert current[net] != "original"
        assert f"{net} published" in result.output
        assert {marker(app, net, pid)["status"] for pid in corrections} == {"learned"}
        metrics = registry.metrics(storage, app.config["MODELS_DIR"], net, current[net])
        assert sorted(metrics["feedback_ids"]) == sorted(corrections)
        assert 0.0 <= metrics["mnist_test_accuracy"] <= 1.0
        # Measured on the published int8 bytes through LiteRT, the way they are served.
        served = metrics["served_mnist_test_accuracy"]
        assert abs(served - metrics["mnist_test_accuracy"]) <= 0.05
        real = metrics["served_real_heldout"]  # shown on the Models page for this version
        assert real["count"] == 30 and len(real["per_digit"]) == 10
    again = run_trainer(app, "--margin", "5")
    assert "published" not in again.output
    assert registry.current(storage) == current


@pytest.mark.parametrize("min_new", [7])
def test_a_net_waits_for_enough_new_corrections_then_publishes_and_prunes(app, corrections):
    storage, engine = app.extensions["storage"], db.engine_of(app)
    models_dir = app.config["MODELS_DIR"]
    older = []
    for _ in range(3):  # versions from before, no longer served: past KEEP_VERSIONS once it runs
        tflite = registry.load_tflite(storage, models_dir, "cnn", "original")
        older.append(registry.publish(storage, "cnn", tflite, b"keras", {"feedback_ids": []}))
    registry.rollback(storage, "cnn", "original")
    waiting = run_trainer(app, "--margin", "5")
    assert waiting.exit_code == 0, waiting.output
    for net in ("fnn", "cnn"):
        assert f"trainer: {net} waiting: 6 new, need 7 or until " in waiting.output
    assert registry.current(storage) == {"fnn": "original", "cnn": "original"}
    assert list(storage.list(learner.MARKERS)) == []  # nothing dealt with: still pending
    assert registry.published(storage, "cnn") == sorted(older)  # no publish: no prune either
    with db.writing(engine) as conn:  # the oldest correction has waited past TRAINER_MAX_WAIT
        conn.execute(db.feedback.update().values(created_at=db.feedback.c.created_at - 7200))
    app.config |= {"TRAINER_MAX_WAIT": 3600.0, "KEEP_VERSIONS": 1}
    result = run_trainer(app, "--margin", "5")
    assert "fnn published" in result.output and "cnn published" in result.output, result.output
    served = registry.current(storage)["cnn"]
    assert registry.published(storage, "cnn") == [served]  # the older versions were pruned
    with db.reading(engine) as conn:
        assert [row["version"] for row in records.version_rows(conn, "cnn")] == [served]
        card = json.loads(records.version_row(conn, "cnn", served)["card"])
    assert card["learned"] == 6 and "feedback_ids" not in card


def test_worse_candidate_is_rejected(app, corrections):
    result = run_trainer(app, "--learning-rate", "20", "--margin", "0")
    assert result.exit_code == 0, result.output
    for net in ("fnn", "cnn"):
        # The line names the rejected run (its name is in its markers), then its base.
        rejected = marker(app, net, corrections[0])
        candidate = rejected["candidate"]
        assert rejected["status"] == "rejected" and registry.is_version(candidate)
        start = f"trainer: {net} candidate {candidate} rejected, trained from original: "
        line = next(line for line in result.output.splitlines() if line.startswith(start))
        assert "MNIST test accuracy" in line
    storage = app.extensions["storage"]
    assert registry.current(storage) == {"fnn": "original", "cnn": "original"}
    # Processed, so the loop does not spin on them.
    assert "rejected" not in run_trainer(app).output


def test_crash_before_publish_keeps_the_queue(app, corrections, monkeypatch):
    def killed(*args, **kwargs):
        raise RuntimeError("killed before publish")

    storage = app.extensions["storage"]
    with monkeypatch.context() as crash:
        crash.setattr(registry, "publish", killed)
        assert run_trainer(app, "--margin", "5").exit_code != 0
    assert list(storage.list(learner.MARKERS)) == []  # nothing acknowledged as learned
    result = run_trainer(app, "--margin", "5")
    assert "fnn published" in result.output and "cnn published" in result.output
    assert marker(app, "cnn", corrections[-1])["status"] == "learned"


def test_crash_after_publish_does_not_learn_twice(app, corrections, reference, monkeypatch):
    real = learner.write_markers

    def crash_on_learned(storage, engine, net, ids, status, **info):
        if status == "learned":
            raise RuntimeError("killed after publish")
        real(storage, engine, net, ids, status, **info)

    with monkeypatch.context() as crash:
        crash.setattr(learner, "write_markers", crash_on_learned)
        assert run_trainer(app, "--margin", "5").exit_code != 0
    storage = app.extensions["storage"]
    fnn_version = registry.current(storage)["fnn"]
    assert fnn_version != "original"
    result = run_trainer(app, "--margin", "5")
    assert "fnn published" not in result.output  # recovered from the version's metrics
    assert registry.current(storage)["fnn"] == fnn_version
    assert "cnn published" in result.output
    assert marker(app, "fnn", corrections[0])["version"] == fnn_version


def test_trainer_that_loses_a_race_retrains_on_the_winner(app, corrections, monkeypatch):
    storage, models_dir = app.extensions["storage"], app.config["MODELS_DIR"]
    real, rival = learner.publish, {}

    def racing(storage, net, model, metrics, base_version, ref):
        if net not in rival:  # another trainer publishes first, from the same base
            tflite = registry.load_tflite(storage, models_dir, net, "original")
            keras_file = registry.load_keras_bytes(storage, models_dir, net, "original")
            rival[net] = registry.publish(storage, net, tflite, keras_file, {"feedback_ids": []})
        return real(storage, net, model, metrics, base_version, ref)

    monkeypatch.setattr(learner, "publish", racing)
    result = run_trainer(app, "--margin", "5")
    assert result.exit_code == 0, result.output
    for net in ("fnn", "cnn"):
        mine = registry.current(storage)[net]
        assert mine != rival[net]  # the rival's update was not overwritten...
        metrics = registry.metrics(storage, models_dir, net, mine)
        assert metrics["base_version"] == rival[net]  # ...but built upon
        assert sorted(metrics["feedback_ids"]) == sorted(corrections)


def test_trust_weight_skips_labels_both_nets_are_sure_against():
    settings = learner.Settings()
    record = {"digit": 5, "fnn": output(3, 0.999), "cnn": output(3, 0.995)}
    assert learner.trust_weight(record, settings) == 0.0
    record = {"digit": 5, "fnn": output(3, 0.6), "cnn": output(3, 0.9)}
    assert 0.25 <= learner.trust_weight(record, settings) < 1.0
    record = {"digit": 5, "fnn": output(3, 0.999), "cnn": output(4, 0.999)}
    assert learner.trust_weight(record, settings) == 1.0
    record = {"digit": 3, "fnn": output(3, 0.999), "cnn": output(3, 0.999)}
    assert learner.trust_weight(record, settings) == 1.0


def test_the_reference_keeps_mnist_as_pixels_within_half_a_grey_level(monkeypatch):
    images, labels = mnist.load_fixture()
    monkeypatch.setattr(mnist, "load", lambda split: (images, labels))
    monkeypatch.setattr(learner, "CHUNK_DIGITS", 64)  # 200 digits: four chunks, one short
    pixels, digits = learner.mnist_pixels("test")
    assert pixels.dtype == np.uint8 and pixels.shape == images.shape
    assert digits.tolist() == labels.tolist()
    inputs = learner.as_inputs(pixels)
    assert inputs.dtype == np.float32
    assert np.abs(inputs - mnist.normalise(images)).max() <= 1 / 510 + 1e-6


def test_accuracy_counts_every_chunk(monkeypatch):
    monkeypatch.setattr(learner, "CHUNK_DIGITS", 3)
    y = np.arange(10)
    chunks = []

    def predict(inputs):  # right on every digit but the last
        assert inputs.dtype == np.float32 and inputs.max() == 1.0  # pixels made inputs
        start = sum(len(chunk) for chunk in chunks)
        chunks.append(inputs)
        digits = y[start : start + len(inputs)].copy()
        if start + len(inputs) == len(y):
            digits[-1] += 1
        return digits

    pixels = np.full((10, 28, 28), 255, np.uint8)
    assert learner.chunked_accuracy(predict, pixels, y) == 0.9
    assert [len(chunk) for chunk in chunks] == [3, 3, 3, 1]
    assert learner.chunked_accuracy(predict, pixels[:0], y[:0]) is None


def test_the_training_set_is_shuffled_without_a_concatenated_copy():
    rng = np.random.default_rng(0)
    parts = [rng.random((5, 28, 28), np.float32), rng.random((7, 28, 28), np.float32)]
    order = rng.permutation(12)
    expected = np.concatenate(parts)[order]
    found = learner.shuffled(parts, order)
    assert found.dtype == np.float32 and np.array_equal(found, expected)


def test_gate_margin():
    settings = learner.Settings(margin_mnist=0.003)
    base = {"mnist_test_accuracy": 0.990, "user_heldout_accuracy": None, "user_heldout_count": 0}
    assert learner.gate(base, {**base, "mnist_test_accuracy": 0.988}, settings) == ""
    assert "MNIST" in learner.gate(base, {**base, "mnist_test_accuracy": 0.986}, settings)
    # Small steps must not add up: 0.2 pp below the current but 0.5 pp below the shipped net.
    drifted = {**base, "mnist_test_accuracy": 0.988}
    reason = learner.gate(base, drifted, settings, shipped=0.993)
    assert "shipped version" in reason


def test_only_consented_digits_are_pending(app, corrections, monkeypatch):
    storage = app.extensions["storage"]
    known = {pid: predictions.load(storage, pid) for pid in corrections}
    for pid in ("refused", "notadigit"):
        known[pid] = {**known[corrections[0]], "id": pid}
    monkeypatch.setattr(predictions, "load", lambda storage, pid: known[pid])
    client = app.test_client()
    body = {"id": "refused", "digit": 1, "consent": False}
    assert client.post("/api/feedback", json=body).status_code == 202
    body = {"id": "notadigit", "digit": None, "consent": True}
    assert client.post("/api/feedback", json=body).status_code == 202
    engine = db.engine_of(app)
    for net in ("fnn", "cnn"):
        pending = progress.pending_records(storage, engine, net)
        assert sorted(r["id"] for r in pending) == sorted(corrections)


def predict_over_http(port: int) -> str:
    body = json.dumps({"imageBase64": data_url(drawing_png())}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", body, headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["id"]


def test_local_runs_web_and_trainer_and_stops_both(tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "STORAGE_URL": str(tmp_path / "storage")}
    runner = subprocess.Popen([sys.executable, "-m", "digits.local"], env=env)
    try:
        wait_for_port(port, timeout=60)
        children = Path(f"/proc/{runner.pid}/task/{runner.pid}/children").read_text().split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children]
        assert sorted(c[5].decode() for c in commands) == ["run", "trainer"]
        queued = predict_over_http(port)  # its record is still in the writer's queue
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) is not None
        assert all(not Path(f"/proc/{pid}").exists() for pid in children)
        # The web app stopped cleanly, so its at-exit flush saved the queued record.
        assert predictions.load(LocalStorage(tmp_path / "storage"), queued)["id"] == queued
    finally:
        if runner.poll() is None:
            runner.kill()


def test_a_pass_backfills_the_dataset_copies_that_failed(tmp_path, reference, monkeypatch):
    """Without training: one "not a digit" (never learned) and one digit already marked."""
    monkeypatch.setattr(feedback, "copy_to_dataset_later", lambda *args: None)  # killed
    storage = LocalStorage(tmp_path / "storage")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    db.upgrade(engine)
    prediction = {
        "created": "2026-11-24T10:00:00+00:00",
        "versions": {"fnn": "original", "cnn": "original"},
        **{net: output(4) for net in ("fnn", "cnn")},
        "image": base64.b64encode(drawing_png()).decode(),
    }
    monkeypatch.setattr(predictions, "load", lambda storage, pid: {**prediction, "id": pid})
    for pid, digit in (("pnone", None), ("pfour", 4)):
        feedback.record_feedback(storage, engine, {"id": pid, "digit": digit, "consent": True})
    for net in ("fnn", "cnn"):
        learner.write_markers(storage, engine, net, ["pfour"], "held_out")
    outcomes = learner.learn_pending(storage, engine, "unused", reference, learner.Settings())
    assert {outcome.status for outcome in outcomes} == {"nothing to learn"}
    assert sorted(dataset.names(storage)) == ["4_pfour", "none_pnone"]


def test_fine_tune_keeps_batch_norm_statistics_and_learns(reference):
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(16, use_bias=False)]
        + [layers.BatchNormalization(), layers.ReLU(), layers.Dense(10, "softmax")]
    )
    dense, norm = model.layers[1], model.layers[2]
    statistics = [w.copy() for w in norm.get_weights()]
    kernel = dense.get_weights()[0].copy()
    x, y = reference.train_x[:64, ..., None], reference.train_y[:64]
    settings = learner.Settings(**SMALL)
    learner.fine_tune("cnn", model, x, y, np.ones(len(y), np.float32), settings)
    for kept, now in zip(statistics, norm.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)  # gamma, beta, moving mean and variance
    assert not np.allclose(kernel, dense.get_weights()[0])
