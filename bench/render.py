"""MNIST digits redrawn as 200x200 canvas PNGs, the way people draw them on the page.

Each digit gets a random size (its longer side 40-180 px), position, slant and stroke thickness,
and is painted as solid black ink on white paper or on a transparent canvas, as the browser sends
it. The steps: crop to the ink, upscale bilinearly, shear, threshold into a binary mask,
dilate or erode it, paint.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

CANVAS = 200
SIZES = (40, 180)
SLANT = 0.35  # horizontal shear x += s * (y - centre), |s| up to this
# Odd filter sizes: (MinFilter = thinner, None = as drawn, MaxFilter = thicker).
THICKNESS = (("min", 3), (None, 0), ("max", 3), ("max", 5), ("max", 7), ("max", 9))
_BINARY = [0] * 128 + [255] * 128  # threshold at half ink


def _crop(digit: np.ndarray) -> Image.Image:
    rows, cols = np.nonzero(digit > 0)
    box = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return Image.fromarray(np.ascontiguousarray(box), mode="L")


def _scaled(crop: Image.Image, longer: int) -> Image.Image:
    scale = longer / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return crop.resize(size, Image.BILINEAR)


def _sheared(image: Image.Image, slant: float) -> Image.Image:
    pad = int(abs(slant) * image.height / 2) + 2
    width = image.width + 2 * pad
    # Affine maps output (x, y) to input (x - pad + slant * (y - h/2), y).
    coeffs = (1, slant, -pad - slant * image.height / 2, 0, 1, 0)
    return image.transform((width, image.height), Image.AFFINE, coeffs, Image.BILINEAR)


def _thickened(mask: Image.Image, kind: str | None, size: int) -> Image.Image:
    if kind == "min":
        return mask.filter(ImageFilter.MinFilter(size))
    if kind == "max":
        return mask.filter(ImageFilter.MaxFilter(size))
    return mask


def _fit(mask: Image.Image, limit: int) -> Image.Image:
    if max(mask.size) <= limit:
        return mask
    scale = limit / max(mask.size)
    return mask.resize((max(1, int(mask.width * scale)), max(1, int(mask.height * scale))))


def ink_mask(digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A binary mode "L" mask (255 = ink) of the digit, sized, slanted and thickened."""
    longer = int(rng.integers(SIZES[0], SIZES[1] + 1))
    slant = float(rng.uniform(-SLANT, SLANT))
    mask = _sheared(_scaled(_crop(digit), longer), slant).point(_BINARY)
    kind, size = THICKNESS[int(rng.integers(len(THICKNESS)))]
    if kind == "min" and longer < 100:
        kind = None  # thinning a small digit would break its strokes apart
    stroke = {"min": 1 - size, "max": size - 1}.get(kind, 0)  # px added across a stroke
    info = {"size": longer, "slant": slant, "stroke_px_added": stroke}
    return _fit(_thickened(mask, kind, size), CANVAS - 4), info


def render(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, dict]:
    """PNG bytes of a 200x200 canvas with the digit, and how it was drawn (size, slant, ...)."""
    mask, info = ink_mask(digit, rng)
    transparent = bool(rng.integers(2))
    paper = (255, 255, 255, 0) if transparent else (255, 255, 255, 255)
    canvas = Image.new("RGBA", (CANVAS, CANVAS), paper)
    left = int(rng.integers(0, CANVAS - mask.width + 1))
    top = int(rng.integers(0, CANVAS - mask.height + 1))
    canvas.paste((0, 0, 0, 255), (left, top), mask)
    buffer = io.BytesIO()
    (canvas if transparent else canvas.convert("RGB")).save(buffer, "PNG")
    return buffer.getvalue(), {**info, "transparent": transparent}


def naive_input(png: bytes) -> np.ndarray:
    """The demo-style preprocessing: composite on white, resize to 28x28, invert, scale to [0, 1].

    What sugyan/tensorflow-mnist and Gradio sketchpad demos do: no crop, no centring.
    """
    image = Image.open(io.BytesIO(png))
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    grey = Image.alpha_composite(paper, image.convert("RGBA")).convert("L")
    small = np.asarray(grey.resize((28, 28), Image.BILINEAR), dtype=np.float32)
    return (255.0 - small) / 255.0
