"""Canvas accuracy without HTTP: bench/render.py canvases -> `to_mnist` -> the .tflite nets.

    .venv/bin/python bench/canvas_accuracy.py [--digits 10000] [--models-dir models] [more dirs]

Same canvases as bench/recognition.py (same seed, same MNIST test digits), so the accuracy is
the one that benchmark measures over HTTP, by drawn size and stroke thickness.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.recognition import SEED  # noqa: E402
from bench.render import render  # noqa: E402
from digits import mnist  # noqa: E402
from digits.preprocess import to_mnist  # noqa: E402
from functions import Model  # noqa: E402


def canvases(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x [N, 28, 28] after `to_mnist`, labels, drawn size, stroke px added), cached in /tmp."""
    cache = Path(f"/tmp/canvas_accuracy_{SEED}_{count}.npz")
    if cache.exists():
        d = np.load(cache)
        return d["x"], d["y"], d["size"], d["stroke"]
    images, labels = mnist.load("test")
    rng = np.random.default_rng(SEED)
    x, size, stroke = [], [], []
    for i in range(count):
        png, info = render(images[i], rng)
        arr = to_mnist(Image.open(io.BytesIO(png)))
        x.append(np.zeros((28, 28), np.float32) if arr is None else arr)
        size.append(info["size"])
        stroke.append(info["stroke_px_added"])
    out = np.stack(x), labels[:count].astype(int), np.array(size), np.array(stroke)
    np.savez(cache, x=out[0], y=out[1], size=out[2], stroke=out[3])
    return out


def report(models_dir: Path, x, y, size, stroke) -> None:
    for net in ("cnn", "fnn"):
        path = models_dir / f"{net}.tflite"
        if not path.exists():
            continue
        model = Model(net, "eval", path.read_bytes())
        ok = np.concatenate([model.predict(b).argmax(1) for b in np.array_split(x, 20)]) == y
        small, thick = size < 70, stroke >= 6
        buckets = {
            "all": np.ones_like(ok),
            "size<70": small,
            "size>=70": ~small,
            "thick+6/+8": thick,
            "small&thick": small & thick,
        }
        parts = [
            f"{k} {ok[m].mean():.2%} ({(~ok[m]).sum()} wrong/{m.sum()})" for k, m in buckets.items()
        ]
        print(f"{models_dir} {net}: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--digits", type=int, default=10000)
    parser.add_argument("models_dirs", nargs="*", type=Path, default=[ROOT / "models"])
    args = parser.parse_args()
    start = time.perf_counter()
    data = canvases(args.digits)
    print(f"{args.digits} canvases ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for models_dir in args.models_dirs:
        report(models_dir, *data)


if __name__ == "__main__":
    main()
