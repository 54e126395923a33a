"""The incremental trainer: learn the users' corrections without forgetting MNIST, safely.

Pending work is every consented feedback record with a digit that the net has not dealt with:
the database says which (digits/progress.py), a chunk at a time, and only those records are read
from storage, so a pass with nothing new is a few queries and memory does not grow with the
backlog. Progress (a marker in storage, then a row) is written only after the net's candidate
was published (or rejected), and each published version lists the feedback ids it learned in its
metrics; on start the trainer marks any ids missing for the current version. So a kill -9 at any
point neither loses an acknowledged sample (not marked: learned next time) nor learns one twice.

One update per net: load the CURRENT version, fine-tune it on the new samples (augmented, several
copies, down-weighted or skipped when both nets confidently disagree with the label) mixed with a
replay of MNIST train and earlier user drawings, evaluate on a fixed held-out set (MNIST test plus
held-out user drawings), and publish only if it is not worse by more than a margin. Publishing
names the version it started from, so two trainers never lose each other's update. A net waits
until enough is new (progress.waiting: a count, or the oldest sample's age): versions do not
pile up.

This module imports TensorFlow; only the trainer process imports it, never the web app.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.engine import Engine

from digits import (
    augment,
    dataset,
    db,
    feedback,
    lifecycle,
    mnist,
    preprocess,
    progress,
    registry,
    strokes,
    training,
)
from digits.nets import NETS
from digits.preprocess import to_mnist
from digits.storage import PreconditionFailed, Storage

log = logging.getLogger("digits.trainer")
MARKERS = progress.MARKERS
AUGMENTS = {"fnn": augment.FNN_AUGMENT, "cnn": augment.CNN_AUGMENT}
# Digits made float32 at a time from the reference's uint8 pixels. And digits Keras evaluates
# at a time: the CNN's activations for 1000 at once held about 100 MB (measured).
CHUNK_DIGITS = 500
EVAL_BATCH = 100


@dataclass
class Settings:
    copies: int = 6  # augmented copies of each new sample
    replay_ratio: float = 2.0  # replayed MNIST train samples per new (augmented) sample
    replay_min: int = 1024
    replay_user: int = 1000  # earlier user drawings replayed, at most
    # Per net, measured on 450 styled corrections (bench/learning.py): the FNN loses MNIST
    # accuracy faster, so it takes smaller steps, for longer.
    epochs: dict = field(default_factory=lambda: {"fnn": 4, "cnn": 2})
    batch_size: int = 64
    learning_rate: dict = field(default_factory=lambda: {"fnn": 1e-5, "cnn": 1e-4})
    margin_mnist: float = 0.003  # reject a candidate more than 0.3 pp worse on MNIST test
    margin_user: float = 0.01  # ... or 1 pp worse on held-out user drawings
    min_user_heldout: int = 20  # fewer held-out user drawings than this are too noisy to gate on
    suspect_confidence: float = 0.99  # both nets this sure, and agreeing, against the label: skip
    seed: int = 0
    chunk: int = progress.CHUNK  # new samples per update at most: memory stays bounded
    held_user: int = 2000  # held-out user drawings a candidate is judged on: the newest ones
    # Learn once this many new samples wait, or the oldest waited this many seconds
    # (progress.waiting). The trainer command sets TRAINER_MIN_NEW and TRAINER_MAX_WAIT; these
    # defaults wait for nothing.
    min_new: int = 1
    max_wait: float = 0.0


@dataclass
class Reference:
    """MNIST arrays: train for replay, test for the gate, [N, 28, 28]: as uint8 pixels (what
    `load_reference` gives, a quarter of float32's memory) or float32 inputs in [0, 1].
    The held-out real writers' digits (optional) are measured on the card, not gated on."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    real_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 28, 28), np.float32))
    real_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))


@dataclass
class Sample:
    id: str
    x: np.ndarray  # [28, 28]
    y: int
    weight: float = 1.0


@dataclass
class Outcome:
    net: str
    status: str  # "published", "rejected", "nothing to learn", "waiting", "lost race"
    version: str | None = None  # the version published
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    base: str | None = None  # the version the candidate was trained from and compared with
    # A rejected candidate has no version: this name (a version-like time stamp, also in its
    # markers) tells one training run from another.
    candidate: str | None = None


def load_reference() -> Reference:
    """MNIST through the same `to_mnist` as serving, cached on disk (the first run takes ~20 s),
    kept as uint8 pixels: 55 MB where float16 replay and float32 test arrays took 125 MB."""
    arrays = _cached_reference()
    mnist_arrays = (arrays[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    return Reference(*mnist_arrays, *strokes.held_out_inputs())


def _cached_reference() -> dict[str, np.ndarray]:
    # Keyed by preprocess.py's source: a change to preprocessing must not reuse stale inputs.
    digest = hashlib.md5(Path(preprocess.__file__).read_bytes(), usedforsecurity=False)
    path = mnist.REPO_ROOT / "data" / "learner" / f"mnist8-{digest.hexdigest()[:12]}.npz"
    if path.exists():
        with np.load(path) as npz:
            return dict(npz)
    (train_x, train_y), (test_x, test_y) = mnist_pixels("train"), mnist_pixels("test")
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # never a half-written cache under the final name
    for stale in path.parent.glob("mnist8-*.npz"):
        if stale != path:
            stale.unlink()  # made with an older preprocess.py: never read again
    return arrays


def mnist_pixels(split: mnist.Split) -> tuple[np.ndarray, np.ndarray]:
    """One split through `to_mnist` as uint8 pixels, a chunk at a time: on a dyno's first pass
    (its disk starts empty) float32 for all of MNIST train took 190 MB more at once."""
    images, labels = mnist.load(split)
    chunks = range(0, len(images), CHUNK_DIGITS)
    pixels = [as_pixels(mnist.normalise(images[i : i + CHUNK_DIGITS])) for i in chunks]
    return np.concatenate(pixels), labels.astype(np.int64)


def as_pixels(x: np.ndarray) -> np.ndarray:
    """float32 inputs [N, 28, 28] in [0, 1] as uint8 grey levels (off by at most 1/510)."""
    return np.stack([preprocess.to_pixels(image) for image in x])


def as_inputs(x: np.ndarray) -> np.ndarray:
    """What the nets take, float32 in [0, 1], from uint8 pixels or from inputs already."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255
    return x.astype(np.float32, copy=False)


# --- the queue and its progress (digits/progress.py) -----------------------------------


def marker_key(net: str, prediction_id: str) -> str:
    return progress.marker_key(net, prediction_id)


def write_markers(
    storage: Storage, engine: Engine, net: str, ids: list[str], status: str, **info
) -> None:
    progress.write_progress(storage, engine, net, ids, status, **info)


def recover_markers(
    storage: Storage, engine: Engine, models_dir: str, net: str, version: str
) -> None:
    """A crash between publish and marking left ids learned but unmarked: mark them now."""
    if version == "original":
        return
    learned = registry.metrics(storage, models_dir, net, version).get("feedback_ids", [])
    done = progress.statuses(engine, net, learned)
    missing = [i for i in learned if i not in done]
    if missing:
        log.info("%s: marking %d ids learned by %s before a crash", net, len(missing), version)
        write_markers(storage, engine, net, missing, "learned", version=version)


# --- turning records into samples --------------------------------------------------------


def drawing_of(record: dict) -> np.ndarray | None:
    png = base64.b64decode(record["image"])
    return to_mnist(Image.open(io.BytesIO(png)))


def trust_weight(record: dict, settings: Settings) -> float:
    """How much to believe a label: less when both nets agree with each other against it."""
    said = {record[net]["digit"] for net in NETS}
    if len(said) != 1 or record["digit"] in said:
        return 1.0
    agreed = said.pop()
    confidence = min(record[net]["probabilities"][agreed] for net in NETS)
    if confidence >= settings.suspect_confidence:
        return 0.0
    return max(0.25, 1.0 - confidence)


def to_samples(records: list[dict], settings: Settings) -> tuple[list[Sample], list[str]]:
    """Samples worth learning, plus the ids skipped (blank or suspect)."""
    samples, skipped = [], []
    for record in records:
        x = drawing_of(record)
        weight = trust_weight(record, settings)
        if x is None or weight == 0.0:
            skipped.append(record["id"])
            continue
        samples.append(Sample(record["id"], x, int(record["digit"]), weight))
    return samples, skipped


def held_out(record: dict) -> bool:
    return training.is_held_out(dataset.sample_id(record["id"]))


# --- training and evaluation -------------------------------------------------------------


def load_version(storage: Storage, models_dir: str, net: str, version: str):
    import keras

    data = registry.load_keras_bytes(storage, models_dir, net, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{net}.keras"
        path.write_bytes(data)
        return keras.models.load_model(path, compile=False)


def keras_bytes(model) -> bytes:
    """The .keras file without optimizer state (a third the size), for any architecture."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        copy.save(path)
        return path.read_bytes()


def training_set(
    net: str, new: list[Sample], replay: list[Sample], ref: Reference, settings: Settings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New samples (augmented copies) + earlier user drawings + MNIST train, shuffled."""
    # Seeded by the batch, so each update replays a different slice of MNIST.
    rng = np.random.default_rng([settings.seed, len(new), len(replay), len(ref.train_x)])
    new_x = np.repeat(np.stack([s.x for s in new]), settings.copies, axis=0)
    new_x = augmented(new_x, rng, AUGMENTS[net])
    new_y = np.repeat([s.y for s in new], settings.copies)
    new_w = np.repeat([s.weight for s in new], settings.copies)
    count = max(settings.replay_min, int(len(new_x) * settings.replay_ratio))
    pick = rng.choice(len(ref.train_x), size=min(count, len(ref.train_x)), replace=False)
    replayed = as_inputs(ref.train_x[pick])
    parts_x, parts_y = [new_x, replayed], [new_y, ref.train_y[pick]]
    parts_w = [new_w, np.ones(len(pick))]
    if replay:
        parts_x.append(augmented(np.stack([s.x for s in replay]), rng, AUGMENTS[net]))
        parts_y.append(np.array([s.y for s in replay]))
        parts_w.append(np.array([s.weight for s in replay]))
    order = rng.permutation(sum(len(part) for part in parts_y))
    x, y, w = (shuffled(parts, order) for parts in (parts_x, parts_y, parts_w))
    return x[..., None], y.astype(np.int64), w.astype(np.float32)


def shuffled(parts: list[np.ndarray], order: np.ndarray) -> np.ndarray:
    """`np.concatenate(parts)[order]` without the concatenated copy (30 MB on a full update)."""
    out = np.empty((len(order), *parts[0].shape[1:]), np.result_type(*parts))
    where = np.argsort(order)  # where each row of the concatenation goes
    start = 0
    for part in parts:
        out[where[start : start + len(part)]] = part
        start += len(part)
    return out


def augmented(x: np.ndarray, rng: np.random.Generator, aug: augment.Augment) -> np.ndarray:
    """On one thread: the trainer's peak memory (bench/trainer_memory.py, 762-824 MB against a
    900 MB budget) was measured with one chunk's temporaries at a time, not two."""
    return augment.augment_batch(x, rng, aug, workers=1)


def fine_tune(net: str, model, x: np.ndarray, y: np.ndarray, w: np.ndarray, settings: Settings):
    """Small steps from the current weights (Adam); the learning rate is far below training's."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    freeze_batch_norm(model)
    training.compile_model(model, settings.learning_rate[net])
    epochs, batch = settings.epochs[net], settings.batch_size
    model.fit(x, y, sample_weight=w, epochs=epochs, batch_size=batch, verbose=0)
    return model


def freeze_batch_norm(model) -> None:
    """Keep BatchNorm's statistics from training: a frozen BatchNormalization layer runs in
    inference mode (Keras's fine-tuning advice), so a few hundred corrections, a third of each
    batch, do not pull the statistics that 77k digits set."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float | None:
    return chunked_accuracy(lambda inputs: training.predict(model, inputs, EVAL_BATCH), x, y)


def served_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float | None:
    """Accuracy of the exported bytes through LiteRT, as the web process serves them."""
    return chunked_accuracy(lambda inputs: training.served_predictions(tflite, inputs), x, y)


def chunked_accuracy(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray
) -> float | None:
    """The share of `predict`'s digits that match y, with only one chunk as float inputs."""
    if len(x) == 0:
        return None
    right = 0
    for start in range(0, len(x), CHUNK_DIGITS):
        digits = predict(as_inputs(x[start : start + CHUNK_DIGITS]))
        right += int(np.sum(digits == y[start : start + CHUNK_DIGITS]))
    return right / len(x)


def evaluate(model, ref: Reference, user_x: np.ndarray, user_y: np.ndarray) -> dict:
    return {
        "mnist_test_accuracy": accuracy(model, ref.test_x, ref.test_y),
        "user_heldout_accuracy": accuracy(model, user_x, user_y),
        "user_heldout_count": len(user_x),
    }


def mnist_drop(reference: float, candidate: dict, settings: Settings, name: str) -> str:
    drop = reference - candidate["mnist_test_accuracy"]
    if drop <= settings.margin_mnist:
        return ""
    return (
        f"MNIST test accuracy {candidate['mnist_test_accuracy']:.4f} is {drop * 100:.2f} pp"
        f" below {name} {reference:.4f} (margin {settings.margin_mnist * 100:.2f} pp)"
    )


def gate(base: dict, candidate: dict, settings: Settings, shipped: float | None = None) -> str:
    """Why the candidate must not be published, or "" if it may.

    Against the current version, and against the shipped one too: many small steps, each
    within the margin, must not add up to a larger loss.
    """
    reason = mnist_drop(base["mnist_test_accuracy"], candidate, settings, "the current version")
    if not reason and shipped is not None:
        reason = mnist_drop(shipped, candidate, settings, "the shipped version")
    if reason or candidate["user_heldout_count"] < settings.min_user_heldout:
        return reason
    drop = base["user_heldout_accuracy"] - candidate["user_heldout_accuracy"]
    # With few held-out drawings one flip is noise: allow at least two of them.
    margin = max(settings.margin_user, 2 / candidate["user_heldout_count"])
    if drop > margin:
        return (
            f"held-out user accuracy {candidate['user_heldout_accuracy']:.4f} is"
            f" {drop * 100:.2f} pp below the current {base['user_heldout_accuracy']:.4f}"
            f" (margin {margin * 100:.2f} pp)"
        )
    return ""


_scores: dict[tuple[str, str, int], dict] = {}  # (net, version, user count) -> evaluate()


def compared(base: dict, candidate: dict) -> str:
    """The gate's two measures, base -> candidate, for the trainer's log."""
    line = f"MNIST test {base['mnist_test_accuracy']:.4f} -> {candidate['mnist_test_accuracy']:.4f}"
    if candidate["user_heldout_count"]:
        line += (
            f", {candidate['user_heldout_count']} held-out drawings"
            f" {base['user_heldout_accuracy']:.4f} -> {candidate['user_heldout_accuracy']:.4f}"
        )
    return line


def base_evaluation(model, net: str, work: Plan, ref: Reference) -> dict:
    """The current version's scores: measured when it was made, if this process made it."""
    key = (net, work.base_version, len(work.user_y))
    if key not in _scores:
        _scores[key] = evaluate(model, ref, work.user_x, work.user_y)
    return _scores[key]


_shipped: dict[tuple[str, str], float] = {}  # (models dir, net) -> MNIST test accuracy


def shipped_accuracy(storage: Storage, models_dir: str, net: str, ref: Reference) -> float:
    """The shipped net's MNIST test accuracy, measured here once per process."""
    key = (str(models_dir), net)
    if key not in _shipped:
        model = load_version(storage, models_dir, net, "original")
        _shipped[key] = accuracy(model, ref.test_x, ref.test_y)
    return _shipped[key]


# --- one update of one net ---------------------------------------------------------------


@dataclass
class Plan:
    """What one update of one net will do with the pending feedback."""

    base_version: str
    new: list[Sample]
    skipped: list[str]
    held: list[str]
    replay: list[Sample]
    user_x: np.ndarray
    user_y: np.ndarray


def plan(storage: Storage, engine: Engine, models_dir: str, net: str, settings: Settings) -> Plan:
    base_version = registry.current(storage).get(net, "original")
    recover_markers(storage, engine, models_dir, net, base_version)
    pending = progress.pending_records(storage, engine, net, settings.chunk)
    held_pending = [r["id"] for r in pending if held_out(r)]
    new, skipped = to_samples([r for r in pending if not held_out(r)], settings)
    empty = np.zeros((0, 28, 28), np.float32)
    if not new:  # nothing to train: skip decoding the replay and evaluation drawings
        return Plan(base_version, new, skipped, held_pending, [], empty, np.zeros(0, np.int64))
    learned = progress.replay_records(storage, engine, net, settings.replay_user)
    replay, _ = to_samples(learned, settings)
    held = progress.held_out_records(storage, engine, settings.held_user)
    user, _ = to_samples(held, Settings(suspect_confidence=2.0))  # evaluate on every label
    user_x = np.stack([s.x for s in user]) if user else empty
    user_y = np.array([s.y for s in user], dtype=np.int64)
    return Plan(base_version, new, skipped, held_pending, replay, user_x, user_y)


def learn_net(
    storage: Storage, engine: Engine, models_dir: str, net: str, ref: Reference, settings: Settings
) -> Outcome:
    wait = progress.waiting(engine, net, settings.min_new, settings.max_wait)
    if wait:  # too little is new: not worth a version yet
        return Outcome(net, "waiting", reason=wait)
    work = plan(storage, engine, models_dir, net, settings)
    write_markers(storage, engine, net, work.held, "held_out")
    reason = "blank, or both nets sure otherwise"
    write_markers(storage, engine, net, work.skipped, "skipped", reason=reason)
    if not work.new:
        return Outcome(net, "nothing to learn")
    started, candidate_name = time.monotonic(), registry.new_version()
    base = load_version(storage, models_dir, net, work.base_version)
    base_scores = base_evaluation(base, net, work, ref)
    x, y, w = training_set(net, work.new, work.replay, ref, settings)
    candidate = fine_tune(net, base, x, y, w, settings)
    scores = evaluate(candidate, ref, work.user_x, work.user_y)
    shipped = shipped_accuracy(storage, models_dir, net, ref)
    log.info(
        "%s: trained on %d samples and evaluated in %.1f s",
        net,
        len(x),
        time.monotonic() - started,
    )
    ids = [s.id for s in work.new]
    log.info("%s: %s", net, compared(base_scores, scores))
    reason = gate(base_scores, scores, settings, shipped)
    if reason:
        info = {"reason": reason, "base": work.base_version, "candidate": candidate_name}
        write_markers(storage, engine, net, ids, "rejected", **info)
        return Outcome(net, "rejected", None, reason, scores, work.base_version, candidate_name)
    metrics = publish_metrics(work, base_scores, scores, ids, settings)
    version = publish(storage, net, candidate, metrics, work.base_version, ref)
    _scores[(net, version, len(work.user_y))] = scores  # the next update's base
    write_markers(storage, engine, net, ids, "learned", version=version)
    lifecycle.record(storage, engine, net, version)  # its card for the pages (else: next prune)
    return Outcome(net, "published", version, "", scores, work.base_version)


def publish(
    storage: Storage, net: str, model, metrics: dict, base_version: str, ref: Reference
) -> str:
    """Raises PreconditionFailed if another trainer published since base_version.

    The card also gets the accuracy of the exported bytes, as the web process serves them
    (int8 weights), so the Models page shows the same measure for every version.
    """
    tflite = training.export_tflite(model)
    if len(ref.test_y):
        served = served_accuracy(tflite, ref.test_x, ref.test_y)
        metrics = {**metrics, "served_mnist_test_accuracy": served}
    if len(ref.real_y):
        real = training.served_real_scores(tflite, ref.real_x, ref.real_y)
        metrics = {**metrics, "served_real_heldout": real}
    return registry.publish(
        storage, net, tflite, keras_bytes(model), metrics, expected_version=base_version
    )


def publish_metrics(work: Plan, base: dict, scores: dict, ids: list[str], settings: Settings):
    return {
        **scores,
        "base_version": work.base_version,
        "base_metrics": base,
        "feedback_ids": ids,
        "learned": len(ids),
        "replayed_user": len(work.replay),
        "settings": asdict(settings),
        "created": datetime.now(UTC).isoformat(),
    }


def learn_net_with_retries(
    storage: Storage,
    engine: Engine,
    models_dir: str,
    net: str,
    ref: Reference,
    settings: Settings,
    tries: int = 3,
) -> Outcome:
    """Another trainer published meanwhile: start again from its version."""
    for _ in range(tries):
        try:
            return learn_net(storage, engine, models_dir, net, ref, settings)
        except PreconditionFailed:
            log.info("%s: another trainer published first; retrying on its version", net)
    return Outcome(net, "lost race", reason=f"another trainer kept publishing ({tries} tries)")


def pass_arguments(app) -> tuple[Storage, Engine, str]:
    """learn_pending's storage, database and models folder, from the app."""
    return app.extensions["storage"], db.engine_of(app), app.config["MODELS_DIR"]


def learn_pending(
    storage: Storage,
    engine: Engine,
    models_dir: str,
    ref: Reference,
    settings: Settings,
    report: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    # The web worker copies drawings into the dataset after answering, and that copy can fail
    # or be killed; this pass repairs it, within one poll interval.
    feedback.backfill_dataset(storage, engine)
    outcomes = []
    for net in NETS:
        outcome = learn_net_with_retries(storage, engine, models_dir, net, ref, settings)
        report(outcome)
        outcomes.append(outcome)
    return outcomes
