"""digits.strokes: the vendored real handwriting, its split by writer, and the pad renderer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits import strokes
from digits.preprocess import to_mnist

ROOT = Path(__file__).resolve().parent.parent
CITATIONS = (
    "E. Alpaydin, F. Alimoglu. Pen-Based Recognition of Handwritten Digits.",
    "The UJIpenchars Database: A Pen-Based Database of Isolated",
)


@pytest.mark.parametrize(("name", "count", "writers"), [("pendigits", 7494, 30), ("uji", 1200, 60)])
def test_load_gives_strokes_labels_and_writers(name: str, count: int, writers: int) -> None:
    digits = strokes.load(name)
    assert len(digits) == count == len(digits.strokes) == len(digits.writers)
    assert len(set(digits.writers)) == writers
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    first = digits.strokes[0]
    assert first and all(s.ndim == 2 and s.shape[1] == 2 and len(s) >= 1 for s in first)


def test_split_by_writer_keeps_every_writer_on_one_side() -> None:
    digits = strokes.load("pendigits")
    train, held = strokes.split_by_writer(digits)
    assert len(train) + len(held) == len(digits)
    assert not set(train.writers) & set(held.writers)
    # A fixed fifth of the writers, the same on every run.
    assert sorted(set(held.writers)) == [
        f"pendigits-{n}" for n in ("01", "03", "08", "10", "11", "13", "24")
    ]


def ink_box(picture: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels at least half black."""
    dark = np.asarray(picture) < 128
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def test_paint_draws_a_round_pen_of_the_given_width() -> None:
    line = np.array([[50.0, 100.0], [100.0, 100.0], [150.0, 100.0]])
    picture = strokes.paint([line], width=10)
    assert picture.size == (200, 200) and picture.mode == "L"
    # Round caps reach half the width past each end; the line is 10 px thick.
    assert ink_box(picture) == (45, 95, 155, 105)
    pixels = np.asarray(picture)
    assert pixels[100, 100] == 0 and pixels[100, 44] == 255 and pixels[94, 100] == 255
    # A tap is a dot as wide as the pen.
    assert ink_box(strokes.paint([np.array([[20.0, 30.0]])], width=8)) == (16, 26, 24, 34)


def test_render_sizes_and_places_the_digit_as_the_pen_says() -> None:
    diagonal = [np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])]
    pen = strokes.Pen(width=10, size=100, centre=(80, 120))
    picture = strokes.render(diagonal, pen)
    # The strokes' box is 100 px wide, centred at (80, 120), widened by the pen's radius.
    left, top, right, bottom = ink_box(picture)
    assert (left, top) == pytest.approx((25, 65), abs=1)
    assert (right, bottom) == pytest.approx((135, 175), abs=1)


def test_jitter_shakes_the_strokes_and_is_seeded() -> None:
    digit = strokes.load("pendigits").strokes[0]
    pen = strokes.Pen(jitter=1.0)
    first = np.asarray(strokes.render(digit, pen, np.random.default_rng(1)))
    again = np.asarray(strokes.render(digit, pen, np.random.default_rng(1)))
    steady = np.asarray(strokes.render(digit, strokes.Pen()))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, steady)


def test_a_rendered_digit_goes_through_to_mnist_like_a_pad_png() -> None:
    digit = strokes.load("pendigits").strokes[0]
    picture = strokes.render(digit, strokes.Pen())
    sent = Image.open(io.BytesIO(strokes.png_bytes(picture)))
    assert sent.size == (200, 200)
    assert np.array_equal(to_mnist(sent), to_mnist(picture))


def test_to_inputs_gives_mnist_like_arrays_per_rendering() -> None:
    digits = strokes.load("uji").subset(np.arange(1200) < 5)
    x, y = strokes.to_inputs(digits, np.random.default_rng(0), renderings=2)
    assert x.shape == (10, 28, 28) and x.dtype == np.float32
    assert np.array_equal(y, np.repeat(digits.labels, 2))
    assert np.allclose(x.max(axis=(1, 2)), 1.0) and x.min() >= 0
    assert not np.array_equal(x[0], x[1])  # two pens, two pictures


@pytest.mark.parametrize("path", ["digits/handwriting/README.md", "README.md"])
def test_the_real_handwriting_is_credited(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    assert "CC BY 4.0" in text
    for citation in CITATIONS:
        assert citation in " ".join(text.split())
