"""Real handwriting: the vendored pen trajectories, and the one renderer that draws them as the pad.

`load` reads a set from `digits/handwriting/` (strokes, labels, writers). `render` draws a
digit's strokes the way the page's pad does (static/js/draw.js: a 200x200 canvas, white ground,
black ink, round caps and joins, quadratic curves through the midpoints between samples), with
a `Pen` that sets the width, the size and place of the digit, its slant and the jitter of a
mouse or finger. The picture then goes through the same `preprocess.to_mnist` as serving.
Training, the benchmarks and the tests all draw through here.

Only numpy and Pillow: the web process may import it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digits.preprocess import to_mnist

DATA_DIR = Path(__file__).resolve().parent / "handwriting"
FILES = {"pendigits": "pendigits-train.jsonl.gz", "uji": "ujipenchars2-digits.jsonl.gz"}
# A fixed fifth of the pendigits writers (7 of 30, by a hash of the id) is never trained on.
HELD_OUT_FRACTION = 0.2

CANVAS = 200  # the pad's logical size and the size of the PNG it sends
SUPERSAMPLE = 2  # drawn at twice the size, then averaged: anti-aliased like the browser's canvas
CURVE_STEPS = 2  # points per quadratic segment: samples lie 1-3 px apart, so 2 look smooth
# Random pens: the pad's brush slider goes from 10 to 24 px (16 by default); a digit's longer
# side on a 200 px pad is anywhere from a small scribble to the whole pad.
WIDTHS = (8.0, 26.0)
SIZES = (50.0, 190.0)
ROTATION = 10.0  # degrees either way
SLANT = 0.3  # x += slant * y, either way
ASPECT = 0.2  # width scaled by 1 +- this
JITTER = 1.2  # the hand's tremble: up to this many canvas px (standard deviation)

Stroke = np.ndarray  # float [points, 2] as (x, y), y growing downwards


@dataclass(frozen=True)
class Handwriting:
    """Digits as pen strokes, with who wrote each."""

    strokes: list[list[Stroke]]
    labels: np.ndarray  # uint8 [N]
    writers: np.ndarray  # str [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> Handwriting:
        """The digits where the boolean mask `keep` is true."""
        index = np.flatnonzero(keep)
        return Handwriting(
            [self.strokes[i] for i in index], self.labels[index], self.writers[index]
        )


@cache
def load(name: str) -> Handwriting:
    """A vendored set by name: "pendigits" or "uji"."""
    strokes, labels, writers = [], [], []
    with gzip.open(DATA_DIR / FILES[name], "rt", encoding="utf-8") as lines:
        for line in lines:
            digit = json.loads(line)
            strokes.append(
                [np.asarray(s, dtype=np.float32).reshape(-1, 2) for s in digit["strokes"]]
            )
            labels.append(digit["label"])
            writers.append(digit["writer"])
    return Handwriting(strokes, np.asarray(labels, np.uint8), np.asarray(writers, dtype=str))


def is_held_out_writer(writer: str, fraction: float = HELD_OUT_FRACTION) -> bool:
    """True for a fixed `fraction` of writers, by a hash of the writer id."""
    digest = hashlib.sha256(writer.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_by_writer(digits: Handwriting) -> tuple[Handwriting, Handwriting]:
    """(training writers' digits, held-out writers' digits): no writer is in both."""
    held = np.array([is_held_out_writer(w) for w in digits.writers], dtype=bool)
    return digits.subset(~held), digits.subset(held)


# ---------------------------------------------------------------- the renderer


@dataclass(frozen=True)
class Pen:
    """How one digit is drawn on the pad; lengths in canvas px."""

    width: float = 16.0  # the brush
    size: float = 140.0  # the longer side of the strokes' bounding box
    centre: tuple[float, float] = (CANVAS / 2, CANVAS / 2)
    rotation: float = 0.0  # degrees, clockwise on screen
    slant: float = 0.0
    aspect: float = 1.0  # width scale
    jitter: float = 0.0  # standard deviation of each point's tremble


def random_pen(rng: np.random.Generator) -> Pen:
    """A pen as people use the pad: any brush, size and place, some slant, a shaky hand."""
    size = rng.uniform(*SIZES)
    margin = size / 2 + 4
    return Pen(
        width=float(rng.uniform(*WIDTHS)),
        size=float(size),
        centre=(
            float(rng.uniform(margin, CANVAS - margin)),
            float(rng.uniform(margin, CANVAS - margin)),
        ),
        rotation=float(rng.uniform(-ROTATION, ROTATION)),
        slant=float(rng.uniform(-SLANT, SLANT)),
        aspect=float(1 + rng.uniform(-ASPECT, ASPECT)),
        jitter=float(rng.uniform(0, JITTER)),
    )


def place(strokes: list[Stroke], pen: Pen, rng: np.random.Generator | None = None) -> list[Stroke]:
    """The strokes in canvas px: distorted, sized to `pen.size`, centred, shaken, on the pad."""
    points = np.concatenate(strokes)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    angle = np.deg2rad(pen.rotation)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    distort = rotate @ np.array([[pen.aspect, pen.slant], [0.0, 1.0]])  # acts on (x, y) columns
    moved = [(s - centre) @ distort.T for s in strokes]
    every = np.concatenate(moved)
    extent = max(float((every.max(axis=0) - every.min(axis=0)).max()), 1e-6)
    placed = []
    for stroke in moved:
        xy = stroke * (pen.size / extent) + np.asarray(pen.centre)
        if pen.jitter and rng is not None:
            xy = xy + rng.normal(0, pen.jitter, xy.shape)
        placed.append(np.clip(xy, 0, CANVAS))  # the pad clamps the pointer to its edges
    return placed


def curve(points: Stroke) -> Stroke:
    """draw.js's path: quadratic curves through the midpoints, each sample a control point."""
    if len(points) < 3:
        return points
    mids = (points[1:-1] + points[2:]) / 2
    starts = np.concatenate([points[:1], mids[:-1]])
    t = np.linspace(0, 1, CURVE_STEPS + 1)[1:, None, None]
    ctrl = points[1:-1]
    segments = (1 - t) ** 2 * starts + 2 * (1 - t) * t * ctrl + t**2 * mids  # [steps, n, 2]
    path = segments.transpose(1, 0, 2).reshape(-1, 2)
    return np.concatenate([points[:1], path, points[-1:]])


def paint(strokes: list[Stroke], width: float) -> Image.Image:
    """Canvas-px strokes as a mode "L" 200x200 picture: white ground, black ink, round pen."""
    scale = SUPERSAMPLE
    big = Image.new("L", (CANVAS * scale, CANVAS * scale), 255)
    draw = ImageDraw.Draw(big)
    radius = width * scale / 2
    for stroke in strokes:
        path = curve(stroke) * scale
        if len(path) > 1:
            flat = [float(v) for v in path.ravel()]
            draw.line(flat, fill=0, width=max(1, round(width * scale)))
        # A disc at every point: round caps and joins (Pillow's own round joint is 5x slower).
        for x, y in path:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return big.reduce(scale)


def render(strokes: list[Stroke], pen: Pen, rng: np.random.Generator | None = None) -> Image.Image:
    """One digit drawn on the pad with `pen` (its jitter drawn from `rng`)."""
    return paint(place(strokes, pen, rng), pen.width)


def png_bytes(picture: Image.Image) -> bytes:
    """The picture as the pad sends it: an opaque RGBA PNG."""
    buffer = io.BytesIO()
    picture.convert("RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def to_inputs(
    digits: Handwriting, rng: np.random.Generator, renderings: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Each digit drawn `renderings` times with random pens, through `to_mnist`.

    Returns (x float32 [N * renderings, 28, 28], y uint8), the renderings of a digit together.
    """
    xs = np.zeros((len(digits) * renderings, 28, 28), np.float32)
    for i, strokes in enumerate(digits.strokes):
        for k in range(renderings):
            arr = to_mnist(render(strokes, random_pen(rng), rng))
            if arr is not None:
                xs[i * renderings + k] = arr
    return xs, np.repeat(digits.labels, renderings)


# The held-out writers' digits are always drawn with the same pens, so every measure of them
# (training's report, the model cards, bench/real.py) is of the same pictures.
HELD_OUT_SEED = 17
HELD_OUT_RENDERINGS = 2


def held_out_inputs(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out pendigits writers' digits as `to_mnist` inputs, the same on every call."""
    _, held = split_by_writer(load("pendigits"))
    if limit is not None:
        held = held.subset(np.arange(len(held)) < limit)
    return to_inputs(held, np.random.default_rng(HELD_OUT_SEED), HELD_OUT_RENDERINGS)


def training_inputs(
    rng: np.random.Generator, renderings: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The pendigits training writers' digits, each drawn `renderings` times with random pens."""
    train, _ = split_by_writer(load("pendigits"))
    if limit is not None:
        train = train.subset(np.arange(len(train)) < limit)
    return to_inputs(train, rng, renderings)
