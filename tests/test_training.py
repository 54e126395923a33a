"""digits.training: a tiny real training run, export to TFLite, and the collected-drawings pipeline.

TensorFlow makes these the slowest tests here (about 30 s on 2 cores, mostly imports and
TFLite conversion); they are marked `slow` so `pytest -m "not slow"` can skip them.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from flask import Flask
from PIL import Image

from digits import augment, mnist, strokes, training
from digits.storage import LocalStorage

pytestmark = pytest.mark.slow


def fixture_split() -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist.load_fixture()
    return mnist.normalise(images), labels


def canvas_png(image28: np.ndarray) -> bytes:
    """An MNIST digit drawn as black ink on a transparent 200x200 canvas, like the browser."""
    ink = Image.fromarray(image28).resize((140, 140), Image.BILINEAR)
    canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    canvas.paste(Image.new("RGBA", ink.size, (0, 0, 0, 255)), (30, 30), mask=ink)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_real() -> tuple[np.ndarray, np.ndarray]:
    """Two held-out writers' digits of each kind, drawn once: real handwriting in a second."""
    _, held = strokes.split_by_writer(strokes.load("pendigits"))
    first = np.concatenate([np.flatnonzero(held.labels == d)[:2] for d in range(10)])
    keep = np.isin(np.arange(len(held)), first)
    return strokes.to_inputs(held.subset(keep), np.random.default_rng(0))


def store_drawings(storage: LocalStorage, count: int = 30) -> None:
    images, labels = mnist.load_fixture()
    for i in range(count):
        stem = f"drawings/{labels[i]}/{labels[i]}_2026_{i:04d}"
        storage.put(stem + ".png", canvas_png(images[i]))
        storage.put(stem + ".json", json.dumps({"label": str(labels[i])}).encode())
    # Not a digit, and a drawing without its commit marker: both must be skipped.
    storage.put("drawings/none/none_2026_0000.png", canvas_png(images[0]))
    storage.put("drawings/none/none_2026_0000.json", b"{}")
    storage.put("drawings/3/3_2026_9999.png", canvas_png(images[0]))


def test_is_held_out_is_fixed_and_about_ten_percent():
    names = [f"drawings/5/5_2026_{i:05d}.json" for i in range(5000)]
    held = [training.is_held_out(n) for n in names]
    assert 0.08 < np.mean(held) < 0.12
    assert held == [training.is_held_out(n) for n in names]
    # The .png and .json of one drawing always land on the same side.
    assert all(training.is_held_out(n[:-5] + ".png") == h for n, h in zip(names, held, strict=True))


def test_collected_drawings_reads_committed_digits_only(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    store_drawings(storage, count=12)
    keys, x, y = training.collected_drawings(storage)
    assert len(keys) == 12 and x.shape == (12, 28, 28) and y.dtype == np.uint8
    assert all(k.endswith(".png") and "/none/" not in k for k in keys)
    images, labels = mnist.load_fixture()
    np.testing.assert_array_equal(np.sort(y), np.sort(labels[:12]))


def test_augment_batch_keeps_shape_range_and_varies():
    x, _ = fixture_split()
    rng = np.random.default_rng(0)
    out = augment.augment_batch(x[:64], rng)
    assert out.shape == (64, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert not np.allclose(out, x[:64])
    assert not np.allclose(out, augment.augment_batch(x[:64], rng))


def test_augment_without_distortion_is_identity():
    x, _ = fixture_split()
    none = augment.Augment(rotation=0, shear=0, aspect=0, scale=0, shift=0, thick=0, thin=0)
    out = augment.augment_batch(x[:32], np.random.default_rng(0), none)
    np.testing.assert_allclose(out, x[:32], atol=1e-6)


@pytest.mark.parametrize("overlap", [True, False])
def test_fit_trains_on_the_epochs_a_serial_loop_would_draw(overlap):
    x, y = fixture_split()
    seen = []

    class Recorder:  # stands in for a Keras model: keeps what each epoch trains on
        def fit(self, x_epoch, y_epoch, **kwargs):
            seen.append(x_epoch[..., 0].copy())

    aug = training.AUGMENT["cnn"]
    training.fit(Recorder(), x[:64], y[:64], epochs=3, aug=aug, seed=5, overlap=overlap)
    rng = np.random.default_rng(5)
    serial = [augment.augment_batch(x[:64], rng, training.AUGMENT["cnn"]) for _ in range(3)]
    assert len(seen) == 3
    assert all(np.array_equal(a, b) for a, b in zip(seen, serial, strict=True))
    assert not np.array_equal(seen[0], seen[1])  # each epoch gets fresh distortions


def test_thickness_changes_ink_amount_the_right_way():
    x, _ = fixture_split()
    rng = np.random.default_rng(0)
    thick = augment.vary_thickness(x[:32], rng, thick=1.0, thin=0.0)
    thin = augment.vary_thickness(x[:32], rng, thick=0.0, thin=1.0)
    assert (thick.sum(axis=(1, 2)) > x[:32].sum(axis=(1, 2))).all()
    assert (thin.sum(axis=(1, 2)) < x[:32].sum(axis=(1, 2))).all()


def test_scores_confusion_and_per_digit():
    result = training.scores(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert result["accuracy"] == 0.75
    assert result["per_digit"][:3] == [0.5, 1.0, 1.0] and result["per_digit"][3] is None
    assert result["confusion"][0][1] == 1 and sum(map(sum, result["confusion"])) == 4


def check_saved_net(out, net: str, x: np.ndarray) -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    card = json.loads((out / f"{net}.json").read_text())
    assert card["net"] == net and card["version"] == "original"
    assert card["params"] == sum(layer["params"] for layer in card["layers"])
    assert 0.0 <= card["mnist_test_accuracy"] <= 1.0
    assert 0.0 <= card["served_mnist_test_accuracy"] <= 1.0
    assert len(card["per_digit_accuracy"]) == 10 and len(card["confusion"]) == 10
    model = keras.models.load_model(out / f"{net}.keras")
    expected = model.predict(x[..., None], verbose=0)
    interpreter = Interpreter(model_content=(out / f"{net}.tflite").read_bytes())
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in range(len(x)):
        interpreter.set_tensor(inp["index"], x[i : i + 1, :, :, None])
        interpreter.invoke()
        # int8 weights (export_tflite): close to Keras, not equal to it
        np.testing.assert_allclose(interpreter.get_tensor(outp["index"])[0], expected[i], atol=0.05)


def test_tiny_training_run_saves_keras_tflite_json(tmp_path):
    x, y = fixture_split()
    storage = LocalStorage(tmp_path / "storage")
    store_drawings(storage)
    keys, xd, yd = training.collected_drawings(storage)
    (x_train, y_train), (x_user, y_user) = training.split_drawings(keys, xd, yd)
    x_real, y_real = tiny_real()
    data = training.Data(
        np.concatenate([x, x_train, x_real]),
        np.concatenate([y, y_train, y_real]),
        *(x, y, x_user, y_user, x_real, y_real),
    )
    out = tmp_path / "models"
    cards = training.train_and_save(data, out, {"fnn": 1, "cnn": 1}, log=lambda s: None, verbose=0)
    assert set(cards) == {"fnn", "cnn"}
    for net in ("fnn", "cnn"):
        assert cards[net]["user_heldout_count"] == len(y_user)
        real = cards[net]["served_real_heldout"]
        assert real["count"] == len(y_real) and real["writers"] == 7
        assert len(real["per_digit"]) == 10 and len(real["confusion"]) == 10
        assert cards[net]["train_samples"] == len(data.x_train)
        check_saved_net(out, net, x[:8])


def test_flask_commands_train_and_evaluate(tmp_path, monkeypatch):
    from digits.cli_train import evaluate_command, train_command

    # The fixture instead of full MNIST: no download, and a few seconds of training.
    monkeypatch.setattr(training, "load_mnist", lambda split, limit=None: fixture_split())
    monkeypatch.setattr(training, "load_real", lambda limit=None: (tiny_real(), tiny_real()))
    app = Flask(__name__)
    app.config["MODELS_DIR"] = str(tmp_path / "models")
    app.extensions["storage"] = LocalStorage(tmp_path / "storage")
    runner = app.test_cli_runner()
    result = runner.invoke(train_command, ["--epochs", "1", "--net", "fnn"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "fnn.tflite").exists()
    result = runner.invoke(evaluate_command, [])
    assert result.exit_code == 0, result.output
    report = result.output.splitlines()
    assert any(line.split() == ["mnist_test", "real_heldout"] for line in report)
    assert "  confusion (row: true, column: predicted)" in report


def test_feedback_drawings_are_held_out_like_their_predictions():
    """`flask train` hashes dataset keys, the trainer hashes prediction ids: they must agree."""
    from digits import dataset, learner, predictions

    ids = [predictions.new_id() for _ in range(300)]
    for pid in ids:
        name = dataset.name_for_prediction("3", pid)
        assert dataset.label_of(name) == "3"
        assert training.is_held_out(dataset.meta_key(name)) == learner.held_out({"id": pid})
    assert 0 < sum(learner.held_out({"id": pid}) for pid in ids) < 90
