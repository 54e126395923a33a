"""Train, evaluate and export the two nets. Imports TensorFlow: CLI and scripts only, never the app.

Training data is MNIST train, real handwriting (the pendigits training writers' strokes, drawn
several times each by `strokes.render` with random pens) and the users' labelled drawings, all
passed through the same `to_mnist` as serving, so train and serve inputs match. Held out and
never trained on: MNIST test, the held-out pendigits writers (`strokes.split_by_writer`) and a
fixed 10% of the drawings (chosen by a hash of the drawing's name).

Run it as `flask --app main train` and `flask --app main evaluate` (digits/cli_train.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from digits import augment, mnist, recipes, strokes
from digits.holdout import is_held_out
from digits.nets import NETS
from digits.preprocess import to_mnist

# Chosen so both nets train from scratch within 20 minutes on 2 CPU cores, on MNIST and the
# real strokes (77k digits). Measured on 2026-12-08 with the cores to itself: 15 min 24 s in
# all (data 55 s, the FNN 108 s at 6-12 s an epoch, the CNN 739 s at 67-82 s an epoch plus
# about 6 s of augmentation). This host's speed varies: the same CNN epoch took 0.70-1.61 ms
# a digit in back-to-back runs, so a slow hour can add a few minutes (see the README).
EPOCHS = {"fnn": 10, "cnn": 9}
PEAK_LR = {"fnn": 2e-3, "cnn": 3e-3}
# Augment the next epoch while this one trains? Keras leaves a core idle for the FNN (about
# 105% CPU), and overlapping cut its 10 epochs from 114 s to 77 s. The CNN keeps both cores
# busy (about 190%), and overlapping slowed it from 451 s to 589 s (measured on 2 cores).
OVERLAP_AUGMENTATION = {"fnn": True, "cnn": False}
AUGMENT = {"fnn": augment.FNN_AUGMENT, "cnn": augment.CNN_AUGMENT}
BATCH_SIZE = 128
# Users' drawings are few next to 60k MNIST digits; repeating them gives them some weight.
USER_REPEAT = 3
# Each training writer's digit is drawn this many times, with a random pen each time.
REAL_RENDERINGS = 3
REAL_SEED = 2026
LABELS = tuple(str(d) for d in range(10))


# ---------------------------------------------------------------- data


def load_mnist(split: mnist.Split, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised MNIST (x float32 [N, 28, 28], y uint8 [N]), optionally the first `limit`."""
    images, labels = mnist.load(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return mnist.normalise(images), labels


def drawing_keys(storage) -> list[tuple[str, int]]:
    """(png key, label) of every committed digit drawing; "none" and unknown labels skipped."""
    found = []
    for key in storage.list("drawings/"):
        parts = key.split("/")
        # The .json is written last, so only drawings with one are complete.
        if len(parts) != 3 or not key.endswith(".json") or parts[1] not in LABELS:
            continue
        found.append((key[: -len(".json")] + ".png", int(parts[1])))
    return found


def collected_drawings(storage) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All labelled drawings in storage: (png keys, x float32 [N, 28, 28], y uint8 [N])."""
    keys, xs, ys = [], [], []
    for key, label in drawing_keys(storage):
        arr = to_mnist(Image.open(io.BytesIO(storage.get(key).data)))
        if arr is None:  # blank canvases carry no digit to learn
            continue
        keys.append(key)
        xs.append(arr)
        ys.append(label)
    x = np.stack(xs) if xs else np.zeros((0, 28, 28), np.float32)
    return keys, x, np.asarray(ys, dtype=np.uint8)


def split_drawings(
    keys: list[str], x: np.ndarray, y: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_heldout, y_heldout)) by `is_held_out`."""
    held = np.array([is_held_out(k) for k in keys], dtype=bool)
    return (x[~held], y[~held]), (x[held], y[held])


def load_real(limit: int | None = None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((x, y) of the training writers' renderings, (x, y) of the held-out writers')."""
    rng = np.random.default_rng(REAL_SEED)
    return strokes.training_inputs(rng, REAL_RENDERINGS, limit), strokes.held_out_inputs(limit)


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray  # MNIST test
    y_test: np.ndarray
    x_user: np.ndarray  # held-out users' drawings
    y_user: np.ndarray
    x_real: np.ndarray  # held-out writers' real handwriting
    y_real: np.ndarray


def load_data(storage=None, limit: int | None = None) -> Data:
    """MNIST train + real training writers (+ users' training drawings), and the held-out sets.

    `limit` takes only the first N MNIST digits and real digits (for quick runs).
    """
    # Drawing the strokes in a thread while MNIST is normalised: Pillow lets go of the GIL for
    # its drawing and resizing, and this took a quarter less time than one after the other.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="strokes") as drawer:
        real = drawer.submit(load_real, limit)
        x_train, y_train = load_mnist("train", limit)
        x_test, y_test = load_mnist("test", limit)
        (x_strokes, y_strokes), (x_real, y_real) = real.result()
    x_train, y_train = np.concatenate([x_train, x_strokes]), np.concatenate([y_train, y_strokes])
    x_user, y_user = np.zeros((0, 28, 28), np.float32), np.zeros(0, np.uint8)
    if storage is not None:
        (xd, yd), (x_user, y_user) = split_drawings(*collected_drawings(storage))
        x_train = np.concatenate([x_train, *[xd] * USER_REPEAT])
        y_train = np.concatenate([y_train, *[yd] * USER_REPEAT])
    return Data(x_train, y_train, x_test, y_test, x_user, y_user, x_real, y_real)


# ---------------------------------------------------------------- training


def lr_schedule(total_steps: int, peak: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """One-cycle-like: linear warm-up over the first 10% of steps, then cosine decay to ~0."""
    warmup = max(1, total_steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 20,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.01,
        warmup_target=peak,
        warmup_steps=warmup,
    )


def compile_model(model: keras.Model, learning_rate=1e-3) -> keras.Model:
    """Adam + sparse cross-entropy; `learning_rate` may be a float or a schedule."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA made these small nets 2x slower on the CPU here (measured).
        jit_compile=False,
    )
    return model


class EpochOfTotal(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, headed "Epoch k/N" although each `fit` call runs one epoch."""

    def __init__(self, total_epochs: int) -> None:
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.epochs = self.total_epochs


def fit(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    aug: augment.Augment,
    seed: int = 0,
    verbose: int = 1,
    overlap: bool = False,
) -> None:
    """Train on freshly augmented data each epoch, one `model.fit` call per epoch.

    Augmenting a whole epoch in numpy (`augment_batch`, two threads) takes about 6 s for the
    CNN's 77k digits; augmenting per batch in a PyDataset made training several times slower
    on 2 cores (measured). With `overlap`, the next epoch is augmented in a thread while this
    one trains. The draws come from one generator in epoch order, so the data are the same as
    in series.
    """
    rng = np.random.default_rng(seed)
    progress = EpochOfTotal(epochs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment") as augmenter:
        upcoming = augmenter.submit(augment.augment_batch, x, rng, aug)
        for epoch in range(epochs):
            x_epoch = upcoming.result()[..., None]
            if epoch + 1 < epochs and overlap:
                upcoming = augmenter.submit(augment.augment_batch, x, rng, aug)
            model.fit(
                x_epoch,
                y,
                batch_size=BATCH_SIZE,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=True,
                verbose=verbose,
                callbacks=[progress],
            )
            if epoch + 1 < epochs and not overlap:
                upcoming = augmenter.submit(augment.augment_batch, x, rng, aug)


def train_net(net: str, data: Data, epochs: int, verbose: int = 1) -> tuple[keras.Model, float]:
    """Build and train one net from scratch; returns (model, seconds)."""
    keras.utils.set_random_seed(1 if net == "fnn" else 2)
    model = recipes.RECIPES[net]()
    steps = epochs * int(np.ceil(len(data.x_train) / BATCH_SIZE))
    compile_model(model, lr_schedule(steps, PEAK_LR[net]))
    start = time.perf_counter()
    overlap = OVERLAP_AUGMENTATION[net]
    fit(model, data.x_train, data.y_train, epochs, AUGMENT[net], verbose=verbose, overlap=overlap)
    return model, time.perf_counter() - start


# ---------------------------------------------------------------- evaluation


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted digits for float32 [N, 28, 28]."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    probs = model.predict(x[..., None], batch_size=batch_size, verbose=0)
    return probs.argmax(axis=1)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, per-digit accuracy (None for absent digits) and a 10x10 confusion matrix."""
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    per_class = confusion.sum(axis=1)
    per_digit = [float(confusion[d, d] / per_class[d]) if per_class[d] else None for d in range(10)]
    accuracy = float(np.trace(confusion) / confusion.sum()) if confusion.sum() else None
    return {
        "accuracy": accuracy,
        "count": int(confusion.sum()),
        "per_digit": per_digit,
        "confusion": confusion.tolist(),
    }


def evaluate(model: keras.Model, data: Data) -> dict[str, dict]:
    """Scores on MNIST test, the held-out real writers and the held-out users' drawings."""
    return {
        "mnist_test": scores(data.y_test, predict(model, data.x_test)),
        "real_heldout": scores(data.y_real, predict(model, data.x_real)),
        "user_heldout": scores(data.y_user, predict(model, data.x_user)),
    }


def format_report(net: str, results: dict[str, dict]) -> str:
    """The sets side by side: accuracy and per digit, then each confusion matrix beside the next
    (rows true, columns predicted). Sets without samples are named and left out."""
    shown = {name: s for name, s in results.items() if s["count"]}
    empty = [name for name, s in results.items() if not s["count"]]
    lines = [f"== {net.upper()}" + (f" (no samples: {', '.join(empty)})" if empty else "")]
    lines.append("  " + " " * 9 + "".join(f"{name:>14}" for name in shown))
    lines.append("  samples  " + "".join(f"{s['count']:>14}" for s in shown.values()))
    lines.append("  accuracy " + "".join(f"{s['accuracy']:>14.4f}" for s in shown.values()))
    for d in range(10):
        cells = [
            "-" if s["per_digit"][d] is None else f"{s['per_digit'][d]:.4f}" for s in shown.values()
        ]
        lines.append(f"  digit {d}  " + "".join(f"{c:>14}" for c in cells))
    lines.append("  confusion (row: true, column: predicted)")
    width = 6 * 10
    lines.append("  " + "    ".join(f"{name:<{width}}" for name in shown).rstrip())
    lines.append("  " + "    ".join("".join(f"{d:>6}" for d in range(10)) for _ in shown))
    for d in range(10):
        rows = ("".join(f"{v:>6}" for v in s["confusion"][d]) for s in shown.values())
        lines.append(f"{d} " + "    ".join(rows))
    return "\n".join(lines)


# ---------------------------------------------------------------- export


def export_tflite(model: keras.Model) -> bytes:
    """The model as a TFLite flatbuffer for LiteRT, with int8 weights (dynamic range).

    Inputs, activations and outputs stay float32. The FNN's 2.1 MB of float weights do not fit
    a core's cache, so each call streamed them from memory: int8 weights (0.55 MB) made it 50 ->
    19 µs alone and the pair 440 -> 260 µs under load. Accuracy on MNIST test moved by at most
    0.02 points (the card's served_mnist_test_accuracy is measured on these bytes).
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with keras_notices_to_log():
        return converter.convert()


@contextlib.contextmanager
def keras_notices_to_log() -> Iterator[None]:
    """While converting, Keras prints the temporary SavedModel's path and endpoints to stdout,
    a dozen lines amid the trainer's output: with interactive logging off it sends them to
    absl's log at INFO instead. The switch is Keras's own, per thread, and is put back after."""
    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_interactive_logging()


def served_predictions(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """The digits the exported bytes give through LiteRT, as the web process serves them."""
    from digits.model import Model

    net = Model("candidate", "candidate", tflite)
    return np.array([int(net.predict(image).argmax()) for image in x], dtype=np.int64)


def served_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the exported bytes through LiteRT, as the web process serves them."""
    return float((served_predictions(tflite, x) == y).mean())


def served_real_scores(tflite: bytes, x: np.ndarray, y: np.ndarray) -> dict:
    """The export's scores on the held-out real writers, per digit: what the Models page shows."""
    found = scores(y, served_predictions(tflite, x))
    writers = sorted(
        {w for w in strokes.load("pendigits").writers if strokes.is_held_out_writer(w)}
    )
    return {**found, "writers": len(writers), "source": "pendigits"}


def describe_layers(model: keras.Model) -> list[dict]:
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(layer.output.shape),
            "params": int(layer.count_params()),
        }
        for layer in model.layers
    ]


def model_card(net: str, model: keras.Model, results: dict, **extra) -> dict:
    """The JSON written beside each model."""
    test, user = results["mnist_test"], results["user_heldout"]
    return {
        "net": net,
        "version": "original",
        "params": int(model.count_params()),
        "layers": describe_layers(model),
        "mnist_test_accuracy": test["accuracy"],
        "user_heldout_accuracy": user["accuracy"],
        "user_heldout_count": user["count"],
        "per_digit_accuracy": test["per_digit"],
        "confusion": test["confusion"],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def without_optimizer(net: str, model: keras.Model) -> keras.Model:
    """A fresh, uncompiled copy: the .keras file then holds weights only (a third the size)."""
    copy = recipes.RECIPES[net]()
    copy.set_weights(model.get_weights())
    return copy


def save_net(net: str, model: keras.Model, card: dict, out: Path, tflite: bytes) -> None:
    """Write <net>.keras, <net>.tflite and <net>.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    without_optimizer(net, model).save(out / f"{net}.keras")
    (out / f"{net}.tflite").write_bytes(tflite)
    (out / f"{net}.json").write_text(json.dumps(card, indent=1) + "\n")


# ---------------------------------------------------------------- commands


def train_all(
    out: Path,
    storage=None,
    epochs: dict[str, int] | None = None,
    limit: int | None = None,
    nets: tuple[str, ...] = NETS,
    log: Callable[[str], None] = print,
    verbose: int = 1,
) -> dict[str, dict]:
    """Load MNIST (+ drawings in storage), train the nets from scratch, save them into `out`."""
    start = time.perf_counter()
    data = load_data(storage, limit)
    log(
        f"data: {len(data.x_train)} train, {len(data.x_test)} MNIST test,"
        f" {len(data.x_real)} held-out real handwriting, {len(data.x_user)} held-out drawings"
        f" ({time.perf_counter() - start:.1f} s)"
    )
    cards = train_and_save(data, out, epochs, nets, log, verbose)
    log(f"total wall time {time.perf_counter() - start:.1f} s")
    return cards


def train_and_save(
    data: Data,
    out: Path,
    epochs: dict[str, int] | None = None,
    nets: tuple[str, ...] = NETS,
    log: Callable[[str], None] = print,
    verbose: int = 1,
) -> dict[str, dict]:
    """Train each net from scratch, evaluate it, save it; returns the model cards."""
    epochs = {**EPOCHS, **(epochs or {})}
    cards = {}
    for net in nets:
        model, seconds = train_net(net, data, epochs[net], verbose)
        results = evaluate(model, data)
        log(format_report(net, results))
        tflite = export_tflite(model)
        cards[net] = model_card(
            net,
            model,
            results,
            served_mnist_test_accuracy=served_accuracy(tflite, data.x_test, data.y_test),
            served_real_heldout=served_real_scores(tflite, data.x_real, data.y_real),
            train_seconds=round(seconds, 1),
            epochs=epochs[net],
            train_samples=len(data.x_train),
        )
        save_net(net, model, cards[net], out, tflite)
        log(f"{net}: trained in {seconds:.1f} s, saved to {out}")
    return cards


def evaluate_saved(models_dir: Path, storage=None, log: Callable[[str], None] = print) -> None:
    """Print the scores of the saved .keras nets on MNIST test and the held-out drawings."""
    data = load_data(storage)
    for net in NETS:
        path = Path(models_dir) / f"{net}.keras"
        if not path.exists():
            log(f"{net}: {path} not found")
            continue
        log(format_report(net, evaluate(keras.models.load_model(path), data)))
