"""digits.registry: immutable versions, a compare-and-swap pointer, rollback; local and real S3."""

from __future__ import annotations

import json
import threading

import pytest

from digits import registry
from digits.storage import LocalStorage, NotFound, PreconditionFailed
from functions import BadModel
from tests.helpers import ARABIC_INDIC, make_models_dir, tiny_bytes, unservable


@pytest.fixture
def models_dir(tmp_path):
    return str(make_models_dir(tmp_path / "models"))


def publish(store, net="cnn", variant="b", **kwargs) -> str:
    metrics = {"mnist_test_accuracy": 0.9}
    return registry.publish(store, net, tiny_bytes(net, variant), b"keras", metrics, **kwargs)


def test_no_pointer_means_original(store):
    assert registry.current(store) == {"fnn": "original", "cnn": "original"}
    assert registry.published(store, "cnn") == []


def test_publish_writes_version_then_moves_pointer(store, models_dir):
    version = publish(store, by="test")
    assert registry.is_version(version)
    assert not registry.is_version(version[:8].translate(ARABIC_INDIC) + version[8:])
    assert not registry.is_version(version + "\n")
    assert registry.current(store) == {"fnn": "original", "cnn": version}
    pointer = json.loads(store.get(registry.POINTER).data)
    assert pointer["by"] == "test" and pointer["cnn"] == version
    assert registry.load_tflite(store, models_dir, "cnn", version) == tiny_bytes("cnn", "b")
    assert registry.load_keras_bytes(store, models_dir, "cnn", version) == b"keras"
    card = registry.metrics(store, models_dir, "cnn", version)
    assert card["mnist_test_accuracy"] == 0.9 and card["version"] == version
    assert registry.published(store, "cnn") == [version]
    assert registry.metrics(store, models_dir, "cnn", "original")["mnist_test_accuracy"] == 0.5


def test_versions_are_immutable(store):
    version = publish(store)
    with pytest.raises(PreconditionFailed):
        store.put(registry.version_key("cnn", version, "model.tflite"), b"x", if_none_match=True)


def test_original_comes_from_models_dir(store, models_dir):
    assert registry.load_tflite(store, models_dir, "fnn", "original") == tiny_bytes("fnn")
    assert registry.metrics(store, models_dir, "fnn", "original")["version"] == "original"
    with pytest.raises(NotFound):
        registry.load_tflite(store, models_dir, "fnn", "20260101T000000Z-abcdef")


def test_a_broken_tflite_is_never_published(store):
    with pytest.raises(BadModel):
        registry.publish(store, "fnn", b"garbage", b"keras", {})
    assert list(store.list("models/")) == []


def test_second_publisher_on_the_same_base_loses(store):
    first = publish(store)
    second = publish(store, expected_version=first)
    with pytest.raises(PreconditionFailed):
        publish(store, expected_version=first)  # trained on `first`, but `second` is newer
    assert registry.current(store)["cnn"] == second
    third = publish(store, expected_version="original", net="fnn")
    assert registry.current(store) == {"fnn": third, "cnn": second}


def test_concurrent_publishers_lose_no_update(store):
    """Two trainers, one per net, publish at the same time: both updates survive."""
    errors: list[Exception] = []
    last: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def trainer(net: str) -> None:
        try:
            barrier.wait()
            for _ in range(4):
                last[net] = publish(store, net=net, variant="b")
        except Exception as e:  # collected, so the test fails with it
            errors.append(e)

    threads = [threading.Thread(target=trainer, args=(net,)) for net in ("fnn", "cnn")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert registry.current(store) == last
    assert len(registry.published(store, "fnn")) == 4


def test_racing_on_one_base_exactly_one_wins(store):
    base = publish(store)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def trainer() -> None:
        barrier.wait()
        try:
            outcomes.append(publish(store, expected_version=base))
        except PreconditionFailed:
            outcomes.append("lost")

    threads = [threading.Thread(target=trainer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[-1] == "lost" and outcomes.count("lost") == 1
    winner = next(o for o in outcomes if o != "lost")
    assert registry.current(store)["cnn"] == winner
    assert registry.published(store, "cnn") == sorted([base, winner])  # the loser's is gone


def test_rollback(store):
    first = publish(store)
    publish(store)
    assert registry.rollback(store, "cnn", first)["cnn"] == first
    assert registry.current(store)["cnn"] == first
    assert registry.rollback(store, "cnn", "original")["cnn"] == "original"
    with pytest.raises(NotFound):
        registry.rollback(store, "cnn", "20260101T000000Z-abcdef")
    with pytest.raises(NotFound):
        registry.rollback(store, "fnn", first)  # a cnn version is not an fnn one


@pytest.mark.parametrize("tflite", [None, b"not a tflite"], ids=["missing", "garbage"])
def test_rollback_refuses_a_version_that_cannot_be_served(store, tflite):
    served = publish(store)
    broken = unservable(store, "cnn", tflite)
    with pytest.raises(BadModel, match=broken):
        registry.rollback(store, "cnn", broken)
    assert registry.current(store)["cnn"] == served  # the pointer did not move


class PointerFails(LocalStorage):
    """Storage that dies just before the pointer moves: a crash half-way through publish."""

    def put(self, key, data, **kwargs):
        if key == registry.POINTER:
            raise OSError("crash")
        return super().put(key, data, **kwargs)


def test_crash_before_pointer_keeps_the_last_good_version(tmp_path):
    good = publish(LocalStorage(tmp_path / "s"))
    with pytest.raises(OSError):
        publish(PointerFails(tmp_path / "s"))
    store = LocalStorage(tmp_path / "s")
    assert registry.current(store)["cnn"] == good
    assert len(registry.published(store, "cnn")) == 2  # complete but never served


def test_half_written_version_is_not_listed(tmp_path):
    store = LocalStorage(tmp_path / "s")
    store.put("models/cnn/20260101T000000Z-abcdef/model.tflite", tiny_bytes("cnn"))
    assert registry.published(store, "cnn") == []


def test_corrupt_pointer_serves_original_and_is_repaired(tmp_path):
    store = LocalStorage(tmp_path / "s")
    store.put(registry.POINTER, b"{not json")
    assert registry.current(store) == {"fnn": "original", "cnn": "original"}
    version = publish(store)
    assert registry.current(store)["cnn"] == version
