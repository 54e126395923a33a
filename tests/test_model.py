"""functions.Model and Recognizer: LiteRT outputs equal Keras's, thread safety, atomic swaps."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from functions import BadModel, Model, Recognizer, verify_tflite
from tests.helpers import FIXTURES, tiny_bytes


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "tiny-expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("net", ["fnn", "cnn"])
@pytest.mark.parametrize("variant", ["a", "b"])
def test_outputs_equal_keras(net, variant, expected):
    model = Model(net, "v", tiny_bytes(net, variant))
    keras_out = expected[f"{net}_{variant}"]
    for x, want in zip(expected["inputs"], keras_out, strict=True):
        got = model.predict(x)
        assert got.shape == (10,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("net", ["fnn", "cnn"])
def test_batch_equals_single(net, expected):
    model = Model(net, "v", tiny_bytes(net))
    batch = model.predict(expected["inputs"])
    assert batch.shape == (len(expected["inputs"]), 10)
    np.testing.assert_allclose(batch, expected[f"{net}_a"], atol=1e-5)
    # Back to one digit after a batch: the interpreter is resized again.
    np.testing.assert_allclose(model.predict(expected["inputs"][2]), batch[2], atol=1e-6)


def test_wrong_shape_is_refused():
    model = Model("fnn", "v", tiny_bytes("fnn"))
    with pytest.raises(ValueError):
        model.predict(np.zeros((27, 28), np.float32))


@pytest.mark.parametrize("data", [b"", b"not a model", tiny_bytes("fnn")[:1000]])
def test_broken_bytes_are_bad_models(data):
    with pytest.raises(BadModel):
        verify_tflite(data)


def test_threads_give_the_serial_answers(expected):
    model = Model("cnn", "v", tiny_bytes("cnn"))
    inputs = np.random.default_rng(3).random((64, 28, 28), dtype=np.float32)
    serial = np.stack([model.predict(x) for x in inputs])
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()  # all threads start together, to overlap as much as possible
        for round_ in range(5):
            out = np.stack([model.predict(x) for x in inputs])
            results[worker * 10 + round_] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for out in results.values():
        np.testing.assert_array_equal(out, serial)


def test_recognizer_swap_keeps_requests_in_flight_on_their_models(expected):
    original = {net: Model(net, "original", tiny_bytes(net)) for net in ("fnn", "cnn")}
    recognizer = Recognizer(original)
    x = expected["inputs"][3]
    assert recognizer.predict_original(x) is None
    in_flight = recognizer.current()
    recognizer.swap("cnn", Model("cnn", "v2", tiny_bytes("cnn", "b")))
    assert in_flight["cnn"].version == "original"  # the old dict was not mutated
    assert recognizer.versions() == {"fnn": "original", "cnn": "v2"}
    outputs = recognizer.predict(x)
    np.testing.assert_allclose(outputs["cnn"].probabilities, expected["cnn_b"][3], atol=1e-5)
    originals = recognizer.predict_original(x)
    assert originals is not None and originals["cnn"].version == "original"
    np.testing.assert_allclose(originals["cnn"].probabilities, expected["cnn_a"][3], atol=1e-5)
