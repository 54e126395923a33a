"""One net served by LiteRT from `.tflite` bytes (`Model`), and `BadModel` for bytes that are not.

The web process imports this and must never import TensorFlow: LiteRT runs the `.tflite`
exports (int8 weights) at about 20 µs (FNN) and 170 µs (CNN) a digit, where
`keras_model.predict` takes 50–70 ms.
"""

from __future__ import annotations

import numpy as np


class BadModel(ValueError):
    """The bytes are not a usable digit net: not a TFLite model, wrong shapes, or NaN outputs."""


class _Runner:
    """One LiteRT interpreter with its tensor indices looked up once."""

    def __init__(self, tflite: bytes) -> None:
        # Imported here: importing the app loads no runtime until a model is needed.
        from ai_edge_litert.interpreter import Interpreter

        # One thread per interpreter: gunicorn already runs 4 request threads on 2 cores.
        self.interpreter = Interpreter(model_content=tflite, num_threads=1)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.batch = 1

    def run(self, x: np.ndarray) -> np.ndarray:
        batch = x.reshape((-1, *self.input_shape))
        if len(batch) != self.batch:
            # Reallocate only when the batch size changes; single digits never do.
            self.interpreter.resize_tensor_input(self.input_index, batch.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(batch)
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)


class Model:
    """One net served by LiteRT from `.tflite` bytes.

    Thread-safe: an interpreter serves one call at a time, so calls take one from a stack of
    idle interpreters and make a new one only when all are busy. The stack hands out the one
    used last, whose packed weights are still in the CPU's cache (an interpreter per thread
    left four cold copies per net cycling through it).
    """

    def __init__(
        self, name: str, version: str, tflite_bytes: bytes, metrics: dict | None = None
    ) -> None:
        self.name = name
        self.version = version
        self.metrics = metrics or {}
        self.tflite = bytes(tflite_bytes)
        self._idle: list[_Runner] = []  # list.pop and list.append are atomic
        self.check()

    def _take(self) -> _Runner:
        try:
            return self._idle.pop()
        except IndexError:
            return _Runner(self.tflite)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities float32 [10] for x [28, 28], or [N, 10] for x [N, 28, 28]."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[-2:] != (28, 28) or x.ndim not in (2, 3):
            raise ValueError(f"expected [28, 28] or [N, 28, 28], got {x.shape}")
        runner = self._take()
        try:
            out = runner.run(x)  # get_tensor returns a copy, so the caller owns the result
        finally:
            self._idle.append(runner)
        return out[0] if x.ndim == 2 else out

    def check(self) -> None:
        """Raise BadModel unless the net loads and answers 10 finite probabilities."""
        try:
            out = self.predict(np.zeros((28, 28), np.float32))
        except BadModel:
            raise
        except Exception as e:
            raise BadModel(f"{self.name} {self.version}: not a loadable digit net: {e}") from e
        if out.shape != (10,) or not np.all(np.isfinite(out)):
            raise BadModel(f"{self.name} {self.version}: bad output {out!r}")
        if abs(float(out.sum()) - 1.0) > 1e-3:
            raise BadModel(f"{self.name} {self.version}: outputs sum to {out.sum()}, not 1")


def verify_tflite(tflite: bytes, name: str = "model", version: str = "candidate") -> None:
    """Raise BadModel unless LiteRT loads the bytes and they give finite probabilities."""
    Model(name, version, tflite)
