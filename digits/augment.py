"""Augmentation that mimics drawing on a canvas, numpy only.

`to_mnist` already normalises size (longest side 20 px) and position (centre of mass), so the
augmentation makes the variations that survive it: slant and rotation, aspect ratio, stroke
thickness, and small shifts of the centre of mass. A share of the digits is redrawn as on a canvas
(`draw_on_canvas`: random size, pen width in canvas pixels, normalised again), which makes the bold
strokes of small digits drawn with a thick pen. Numpy only, so the incremental trainer reuses it
without building a TensorFlow pipeline.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Ranges of the random distortions; angles in degrees, shifts in pixels."""

    rotation: float = 12.0
    shear: float = 0.3  # horizontal slant, x += shear * y
    aspect: float = 0.15  # width scaled by 1 +- aspect, relative to height
    scale: float = 0.08
    shift: float = 1.2
    thick: float = 0.25  # probability of a thicker stroke (grey dilation)
    thin: float = 0.2  # probability of a thinner stroke (grey erosion)
    canvas: float = 0.0  # probability of a redrawing by `draw_on_canvas` instead


# Small digits drawn with a thick pen are the hardest canvas drawings: the CNN sees more of them.
CNN_AUGMENT = Augment(canvas=0.5)
FNN_AUGMENT = Augment(rotation=8.0, shear=0.2, aspect=0.1, scale=0.05, shift=0.8, canvas=0.25)


def _pool2x2(x: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """Grey dilation (np.maximum) or erosion (np.minimum) with a 2x2 window, same size."""
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1)))
    out = reduce(padded[:, :-1, :-1], padded[:, 1:, :-1])
    return reduce(out, reduce(padded[:, :-1, 1:], padded[:, 1:, 1:]))


def vary_thickness(
    x: np.ndarray, rng: np.random.Generator, thick: float, thin: float
) -> np.ndarray:
    """Dilate a random share of the digits and erode another, like pens of different widths."""
    pick = rng.random(len(x))
    out = x.copy()
    grow = pick < thick
    shrink = (pick >= thick) & (pick < thick + thin)
    out[grow] = _pool2x2(x[grow], np.maximum)
    out[shrink] = _pool2x2(x[shrink], np.minimum)
    return out


# How `draw_on_canvas` draws: the digit's longer side and the pen width, in 200 px canvas pixels.
CANVAS_SIZES = (40, 180)
PEN_WIDTHS = (0.0, 12.0)  # pixels added across a stroke; the page's brush is 10-24 px


def _dilate(x: np.ndarray, widths: np.ndarray, axis: int) -> np.ndarray:
    """Max over a window `widths[k]` + 1 px long along `axis`, per image (zero borders needed).

    The images are sorted by width, so each step works in place on a leading slice: picking
    them by mask copied the images three times a step, the most time the augmentation took.
    """
    order = np.argsort(-widths, kind="stable")
    src, ranked = x[order], widths[order]
    out = src.copy()
    for step in range(1, int(widths.max(initial=0)) + 1):
        k = int(np.count_nonzero(ranked >= step))
        shift = (step + 1) // 2 * (1 if step % 2 else -1)  # +1, -1, +2, -2, ...
        _max_shifted(out[:k], src[:k], shift, axis)
    return out[np.argsort(order)]


def _max_shifted(out: np.ndarray, src: np.ndarray, shift: int, axis: int) -> None:
    """out = max(out, src moved `shift` px along `axis`), in place; what moves out is dropped."""
    to = [slice(None)] * out.ndim
    start = [slice(None)] * out.ndim
    to[axis], start[axis] = (
        (slice(shift, None), slice(None, -shift))
        if shift > 0
        else (slice(None, shift), slice(-shift, None))
    )
    np.maximum(out[tuple(to)], src[tuple(start)], out=out[tuple(to)])


def _upscale2(x: np.ndarray, axis: int) -> np.ndarray:
    """Twice as many pixels along `axis`, bilinear as in Pillow (weights 3/4 and 1/4)."""
    x = np.moveaxis(x, axis, 0)
    padded = np.concatenate([x[:1] * 0, x, x[:1] * 0])
    near, before, after = 0.75 * padded[1:-1], 0.25 * padded[:-2], 0.25 * padded[2:]
    out = np.stack([near + before, near + after], axis=1).reshape(2 * len(x), *x.shape[1:])
    return np.moveaxis(out, 0, axis)


def _draw_on_canvas(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    # 2x supersampling: the 20 px box becomes 40 px, the smallest digit drawn on the canvas.
    ink = _upscale2(_upscale2(np.pad(x, ((0, 0), (4, 4), (4, 4))), 1), 2) >= 0.5
    size = ink.shape[1]
    # A pen w canvas px wide on a digit L px long adds w * 40 / L px here.
    longer = rng.uniform(*CANVAS_SIZES, n)
    widths = np.rint(rng.uniform(*PEN_WIDTHS, n) * 40 / longer).astype(int)
    ink = _dilate(_dilate(ink, widths, 1), widths, 2)
    # Then `to_mnist`: the longer side of the ink's bbox to 20 px, centre of mass at (14, 14).
    ink = ink.astype(np.float32)
    index = np.arange(size, dtype=np.float32)
    rows, cols = ink.sum(axis=2), ink.sum(axis=1)
    total = np.maximum(rows.sum(axis=1), 1e-6)
    com_y, com_x = rows @ index / total, cols @ index / total

    def extent(profile: np.ndarray) -> np.ndarray:
        filled = profile > 0
        return size - filled[:, ::-1].argmax(axis=1) - filled.argmax(axis=1)

    step = (np.maximum(extent(rows), extent(cols)) / 20.0).astype(np.float32)
    # Average 2x2 blocks (centred at +0.5) before sampling: an anti-aliased reduction.
    smooth = (ink[:, :-1, :-1] + ink[:, 1:, :-1] + ink[:, :-1, 1:] + ink[:, 1:, 1:]) / 4
    out = np.arange(28, dtype=np.float32) - 14.0
    ys = com_y[:, None, None] - 0.5 + out[None, :, None] * step[:, None, None]
    xs = com_x[:, None, None] - 0.5 + out[None, None, :] * step[:, None, None]
    ys, xs = np.broadcast_to(ys, (n, 28, 28)), np.broadcast_to(xs, (n, 28, 28))
    edge = size - 1
    return _bilinear(smooth, np.clip(ys, -1, edge), np.clip(xs, -1, edge))


def draw_on_canvas(x: np.ndarray, rng: np.random.Generator, chunk: int = 512) -> np.ndarray:
    """Redraw [N, 28, 28] digits like a canvas drawing after `to_mnist`.

    Each digit is drawn hard-edged at a random size with a pen of random width in canvas
    pixels, so a small digit drawn with a thick pen comes out far bolder than any MNIST digit,
    then normalised again as `to_mnist` does (fit into 20 px, centre of mass at 14).
    """
    parts = [_draw_on_canvas(x[i : i + chunk], rng) for i in range(0, len(x), chunk)]
    return np.concatenate(parts) if parts else x.copy()


def _random_inverse_affine(n: int, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """[n, 2, 2] matrices mapping output (y, x) offsets back to source offsets."""
    angle = np.deg2rad(rng.uniform(-aug.rotation, aug.rotation, n))
    shear = rng.uniform(-aug.shear, aug.shear, n)
    scale = 1.0 + rng.uniform(-aug.scale, aug.scale, n)
    aspect = 1.0 + rng.uniform(-aug.aspect, aug.aspect, n)
    zeros, ones = np.zeros(n), np.ones(n)
    # In (y, x) coordinates: scale (height, width), slant x += shear * y, then rotate.
    stretch = _stack_2x2(scale, zeros, zeros, scale * aspect)
    slant = _stack_2x2(ones, zeros, shear, ones)
    rotate = _stack_2x2(np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle))
    return np.linalg.inv(rotate @ slant @ stretch)


def _stack_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.stack([np.stack([a, b], axis=-1), np.stack([c, d], axis=-1)], axis=-2)


def _bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample each image x[k] at float coordinates (ys[k], xs[k]) in [-1, size]; zero outside."""
    n, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 2), (1, 2))).ravel()  # reads outside the image give zero
    ph, pw = h + 3, w + 3
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = (ys - y0).astype(np.float32), (xs - x0).astype(np.float32)
    # One flat index per sample point: np.take on a flat array is far faster than 3-d indexing.
    base = np.arange(n).reshape(n, 1, 1) * (ph * pw)
    index = base + (y0.astype(np.int64) + 1) * pw + (x0.astype(np.int64) + 1)
    top = padded.take(index) * (1 - fx) + padded.take(index + 1) * fx
    bottom = padded.take(index + pw) * (1 - fx) + padded.take(index + pw + 1) * fx
    return top * (1 - fy) + bottom * fy


def random_affine(x: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Rotate, slant, rescale and shift each [28, 28] image about its centre of mass (14, 14)."""
    n, h, w = x.shape
    inverse = _random_inverse_affine(n, rng, aug).astype(np.float32)
    shift = rng.uniform(-aug.shift, aug.shift, (n, 2, 1)).astype(np.float32)
    grid = np.mgrid[0:h, 0:w].reshape(2, -1).astype(np.float32) - 14.0
    source = inverse @ (grid[None] - shift) + 14.0  # [n, 2, h*w] as (y, x)
    ys, xs = source[:, 0].reshape(n, h, w), source[:, 1].reshape(n, h, w)
    # Reads far outside are clamped onto the zero border, then blanked.
    outside = (ys < -1) | (ys > h) | (xs < -1) | (xs > w)
    out = _bilinear(x, np.clip(ys, -1, h), np.clip(xs, -1, w))
    out[outside] = 0.0
    return out


# Digits augmented at a time: a chunk's temporaries stay in the CPU's cache. For the CNN, 77k
# digits took 18.3 s in one go and 11.2 s in chunks of 512 (5.8 s on two threads), measured.
CHUNK = 512
# Threads that augment chunks at once: numpy lets go of the GIL in the array work.
WORKERS = 2


def augment_batch(
    x: np.ndarray, rng: np.random.Generator, aug: Augment = CNN_AUGMENT, workers: int = WORKERS
) -> np.ndarray:
    """Canvas-like variations of float32 digits [N, 28, 28] (or [N, 28, 28, 1]) in [0, 1].

    Each chunk draws from its own generator spawned from `rng`, so the result does not depend
    on `workers`, and `rng` moves on as after any other draw.
    """
    images = x.reshape(-1, 28, 28).astype(np.float32, copy=False)
    starts = range(0, len(images), CHUNK)
    streams = rng.spawn(len(starts))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="augment") as pool:
        parts = pool.map(
            lambda start, stream: _augment_chunk(images[start : start + CHUNK], stream, aug),
            starts,
            streams,
        )
        out = np.concatenate(list(parts)) if len(images) else images.copy()
    return out.reshape(x.shape)


def _augment_chunk(images: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    drawn = rng.random(len(images)) < aug.canvas
    original = images[drawn]
    images = vary_thickness(images, rng, aug.thick, aug.thin)
    images[drawn] = draw_on_canvas(original, rng)
    images = random_affine(images, rng, aug)
    # Serving inputs always have their darkest ink at 1 (see preprocess._normalised).
    peak = images.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, images / np.maximum(peak, 1e-6), images).astype(np.float32)
