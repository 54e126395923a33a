"""Serving the nets: `Recognizer` (the current and the shipped nets) and `ModelService`.

`ModelService` loads the versions named by the registry's pointer and keeps them current: a
daemon thread per process polls the pointer and swaps in new versions without dropping a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from digits import registry
from digits.model import BadModel, Model
from digits.nets import NETS
from digits.storage import Storage, StorageError

log = logging.getLogger(__name__)

ORIGINAL = registry.ORIGINAL


class ModelsUnavailable(RuntimeError):
    """The nets cannot be loaded (missing or broken files): predictions are impossible now."""


@dataclass(frozen=True)
class Output:
    version: str
    probabilities: np.ndarray


class Recognizer:
    """The current nets and the shipped ("original") ones.

    `swap` replaces a whole dict in one assignment: a request reads `self._current` once, so
    one in flight keeps using the models it started with.
    """

    def __init__(self, original: dict[str, Model], current: dict[str, Model] | None = None):
        self.original = dict(original)
        self._current = dict(current or original)
        self._swap_lock = threading.Lock()  # writers only: two swaps must not lose one

    def current(self) -> dict[str, Model]:
        return self._current

    def versions(self) -> dict[str, str]:
        return {net: model.version for net, model in self._current.items()}

    def swap(self, net: str, model: Model) -> None:
        with self._swap_lock:
            self._current = {**self._current, net: model}

    def predict(self, x28: np.ndarray) -> dict[str, Output]:
        """Each current net's probabilities for one [28, 28] input."""
        models = self._current
        return {net: Output(m.version, m.predict(x28)) for net, m in models.items()}

    def predict_original(self, x28: np.ndarray) -> dict[str, Output] | None:
        """The shipped nets' outputs, or None when every current net is the shipped one."""
        models = self._current
        if all(models[net] is self.original[net] for net in models):
            return None
        return {net: Output(m.version, m.predict(x28)) for net, m in self.original.items()}


def load_model(storage: Storage, models_dir: str, net: str, version: str) -> Model:
    """Read one version from the registry and check it in LiteRT (raises BadModel)."""
    tflite = registry.load_tflite(storage, models_dir, net, version)
    metrics = registry.metrics(storage, models_dir, net, version)
    return Model(net, version, tflite, metrics)


class ModelService:
    """The recognizer of one process, loaded on first use and kept current by a watcher thread."""

    def __init__(
        self, storage: Storage, models_dir: str, poll_seconds: float = 2.0, watch: bool = True
    ) -> None:
        self.storage = storage
        self.models_dir = models_dir
        self.poll_seconds = poll_seconds
        self.watch = watch
        self._recognizer: Recognizer | None = None
        self._lock = threading.Lock()
        self._watcher_pid: int | None = None
        self._skipped: dict[str, str] = {}  # net -> version that failed to load, not retried

    def recognizer(self) -> Recognizer:
        """The loaded recognizer; loads it and starts the watcher on first use in each process."""
        recognizer = self._recognizer
        if recognizer is None or (self.watch and self._watcher_pid != os.getpid()):
            recognizer = self._start()
        return recognizer

    def _start(self) -> Recognizer:
        with self._lock:
            if self._recognizer is None:
                self._recognizer = self._load()
            # Threads do not survive a fork: a gunicorn worker starts its own watcher.
            if self.watch and self._watcher_pid != os.getpid():
                self._watcher_pid = os.getpid()
                threading.Thread(target=self._watch_loop, name="model-watcher", daemon=True).start()
            return self._recognizer

    def _load(self) -> Recognizer:
        try:
            original = {
                net: load_model(self.storage, self.models_dir, net, ORIGINAL) for net in NETS
            }
        except (StorageError, OSError, BadModel) as e:
            raise ModelsUnavailable(f"the shipped models cannot be loaded: {e}") from e
        recognizer = Recognizer(original)
        try:
            self._apply(recognizer, registry.current(self.storage))
        except StorageError as e:
            # Serve the shipped nets now; the watcher catches up when storage answers.
            log.warning("model pointer unreadable, serving the shipped nets: %s", e)
        return recognizer

    def refresh(self) -> None:
        """Read the pointer once and swap in any net whose version changed."""
        recognizer = self._recognizer
        if recognizer is not None:
            self._apply(recognizer, registry.current(self.storage))

    def _apply(self, recognizer: Recognizer, pointer: dict[str, str]) -> None:
        served = recognizer.versions()
        for net, version in pointer.items():
            if net in served and version != served[net] and self._skipped.get(net) != version:
                self._swap(recognizer, net, version)

    def _swap(self, recognizer: Recognizer, net: str, version: str) -> None:
        if version == ORIGINAL:
            recognizer.swap(net, recognizer.original[net])
            log.info("model %s: back to the original", net)
            return
        try:
            model = load_model(self.storage, self.models_dir, net, version)
        except (BadModel, StorageError) as e:
            # Keep serving what works; a broken version is not retried until the pointer moves.
            log.error("model %s %s not loaded, keeping %s: %s", net, version, self.versions(), e)
            if not isinstance(e, StorageError) or isinstance(e, registry.NotFound):
                self._skipped[net] = version
            return
        recognizer.swap(net, model)
        log.info("model %s: now serving %s", net, version)

    def _watch_loop(self) -> None:
        while True:
            time.sleep(self.poll_seconds)
            try:
                self.refresh()
            except StorageError as e:  # an outage: keep serving the current nets, retry
                log.warning("model watcher: pointer unreadable, retrying: %s", e)
            except Exception:  # never let the watcher die
                log.exception("model watcher: pointer check failed; retrying")

    def versions(self) -> dict[str, str | None]:
        """net -> version served now; None for each net when the models cannot be loaded."""
        try:
            return self.recognizer().versions()
        except ModelsUnavailable:
            return {net: None for net in NETS}

    def describe(self, card_of: Callable[[str, str], dict] | None = None) -> dict[str, dict]:
        """Per net: the version this process serves, and the pointer's and the original's cards
        (from `card_of(net, version)`: the database's rows; by default, the metrics.json)."""
        pointer = registry.current(self.storage)
        served = self.versions()
        card_of = card_of or (lambda n, v: registry.metrics(self.storage, self.models_dir, n, v))
        return {
            net: {
                "served": served[net],
                "current": self._card(card_of, net, pointer[net]),
                "original": self._card(card_of, net, ORIGINAL),
            }
            for net in NETS
        }

    def _card(self, card_of: Callable[[str, str], dict], net: str, version: str) -> dict:
        try:
            card = card_of(net, version)
        except registry.NotFound:
            card = {}
        # The ids a version learned from can run to thousands: not for this summary.
        card = {k: v for k, v in card.items() if k != "feedback_ids"}
        return {"version": version, "created": card.get("created"), "metrics": card}


def service_for(config: dict, storage: Storage) -> ModelService:
    """The app's ModelService from its settings (MODELS_DIR, MODEL_POLL_SECONDS, MODEL_WATCH)."""
    poll_seconds, watch = config["MODEL_POLL_SECONDS"], config["MODEL_WATCH"]
    return ModelService(storage, config["MODELS_DIR"], poll_seconds=poll_seconds, watch=watch)
