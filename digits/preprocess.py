"""The one preprocessing step, shared by training, serving and export: drawing -> MNIST input.

MNIST was made by fitting each digit into a 20x20 box (keeping its aspect ratio, anti-aliased) and
placing that box in a 28x28 field so the centre of mass sits in the middle. Drawings get the same
treatment, so the nets see the same kind of input they were trained on.

Only numpy and Pillow here: the web process imports this and must never import TensorFlow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from digits import png

SIZE = 28
BOX = 20
# MNIST's centre of mass sits at pixel index 14.0 (measured on the 60k training digits: +- 0.29).
CENTRE = 14.0
# Ink below this level (of 255) is anti-aliasing fringe or noise: it does not widen the bbox.
INK_THRESHOLD = 40
# A drawing whose ink spans less than this fraction of the canvas is a speck, not a digit:
# 20 px on a 200 px canvas, above one dab of a 15 px brush, well below any digit people draw.
MIN_EXTENT = 0.1
# A drawing: any Pillow image, or the [height, width, 3 or 4] uint8 pixels `png.decode` gives.
Drawing = Image.Image | np.ndarray


def ink_of(drawing: Drawing) -> np.ndarray:
    """uint8 [height, width] ink (0 = paper, 255 = full ink), as `ink_image` computes it."""
    if isinstance(drawing, np.ndarray):
        ink = canvas_ink(drawing)
        if ink is not None:  # bit for bit what the general path gives, in a third of the time
            return ink
        drawing = Image.fromarray(drawing)
    return np.asarray(ink_image(drawing))


def canvas_ink(pixels: np.ndarray) -> np.ndarray | None:
    """`ink_image`'s answer without Pillow's four passes, for the two kinds of RGBA canvas.

    The page paints a white ground, then black strokes: opaque grey pixels. A canvas never
    filled sends black ink on a clear ground. None for any other pixels (the general path).
    """
    if pixels.dtype != np.uint8 or pixels.shape[2:] != (4,) or not pixels.flags.c_contiguous:
        return None
    # One little-endian word a pixel: R | G << 8 | B << 16 | A << 24.
    words = pixels.view("<u4")[..., 0]
    if words[0, 0] >> 24 == 0xFF:  # an opaque corner: worth checking for opaque grey
        ink = opaque_grey_ink(words)
        if ink is not None:
            return ink
    return canvas_alpha(pixels)


def opaque_grey_ink(words: np.ndarray) -> np.ndarray | None:
    """255 - grey if every pixel is opaque grey (A = 255, R = G = B), else None.

    Pillow's L of grey g is exactly g (its weights sum to 65536), and at full alpha
    ink_image's (255 - L) * A / 255 is 255 - L, so this is bit for bit what Pillow gives.
    """
    grey = words & 0xFF
    if not np.array_equal(words, grey * 0x010101 + 0xFF000000):
        return None
    return (255 - grey).astype(np.uint8)


def canvas_alpha(pixels: np.ndarray) -> np.ndarray | None:
    """The alpha of RGBA pixels whose R, G and B are 0 everywhere (black ink on clear ground).

    ink_image's (255 - grey) * alpha / 255 is then exactly alpha. None for any other pixels.
    Contiguous: ink_bbox scans it twice as fast as a strided view.
    """
    alpha = np.ascontiguousarray(pixels[..., 3])
    # No more nonzero bytes in the pixels than in their alpha: R, G and B are all 0. (Counting
    # is one fast pass and needs no 160 kB temporary, unlike masking or a strided [..., :3].)
    return alpha if np.count_nonzero(pixels) == np.count_nonzero(alpha) else None


def ink_image(image: Image.Image) -> Image.Image:
    """Mode "L" image of ink (0 = paper, 255 = full ink), any transparency composited onto white."""
    if "transparency" in image.info or image.mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # A canvas never filled sends black ink on transparent ground. On white paper the ink
        # is (255 - grey) scaled by alpha, which is exactly what multiply computes.
        return ImageChops.multiply(ImageChops.invert(image.convert("L")), image.getchannel("A"))
    return ImageChops.invert(image.convert("L"))


def ink_bbox(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) of the ink, or None if it is blank or a speck."""
    mask = ink > INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    bbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    extent = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    if extent < MIN_EXTENT * max(ink.shape):
        return None
    return bbox


def crop(ink: np.ndarray, bbox: tuple[int, int, int, int]) -> Image.Image:
    """The ink inside `bbox` as a mode "L" image: only this small part is ever a Pillow image."""
    left, top, right, bottom = bbox
    return Image.fromarray(ink[top:bottom, left:right])


def fit_box(crop: Image.Image, box: int = BOX) -> Image.Image:
    """Scale so the longest side is `box` px, keeping the aspect ratio, anti-aliased."""
    width, height = crop.size
    scale = box / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap first box-averages big reductions: far faster than plain LANCZOS, as smooth.
    return crop.resize(size, Image.LANCZOS, reducing_gap=2.0)


def centre_by_mass(digit: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Place a float array in a size x size field so its centre of mass lands at CENTRE."""
    height, width = digit.shape
    total = digit.sum()
    rows = np.arange(height, dtype=np.float32)
    cols = np.arange(width, dtype=np.float32)
    com_y = float(digit.sum(axis=1) @ rows / total)
    com_x = float(digit.sum(axis=0) @ cols / total)
    # Clamp so the whole digit stays in the field (MNIST's 20 px box always fits in 28).
    top = min(max(round(CENTRE - com_y), 0), size - height)
    left = min(max(round(CENTRE - com_x), 0), size - width)
    field = np.zeros((size, size), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return field


def _normalised(fitted: Image.Image) -> np.ndarray:
    """Float32 in [0, 1] with the darkest ink at 1, as in MNIST (thin strokes fade when shrunk)."""
    digit = np.asarray(fitted, dtype=np.float32)
    return digit / digit.max()


def to_mnist(drawing: Drawing) -> np.ndarray | None:
    """Float32 [28, 28] in [0, 1], white ink on black like MNIST; None if the canvas is blank."""
    ink = ink_of(drawing)
    bbox = ink_bbox(ink)
    if bbox is None:
        return None
    fitted = fit_box(crop(ink, bbox))
    return centre_by_mass(_normalised(fitted))


def preprocess_steps(drawing: Drawing) -> list[tuple[str, Image.Image]]:
    """Each intermediate image with a short title, for an explanation page. Stops early if blank."""
    ink = ink_of(drawing)
    shown = Image.fromarray(ink)
    steps = [
        ("Drawing on white", ImageChops.invert(shown)),
        ("Inverted: white ink on black", shown),
    ]
    bbox = ink_bbox(ink)
    if bbox is None:
        return [*steps, ("Blank: nothing to recognise", Image.new("L", (SIZE, SIZE)))]
    cropped = crop(ink, bbox)
    fitted = fit_box(cropped)
    final = centre_by_mass(_normalised(fitted))
    return [
        *steps,
        ("Cropped to the ink", cropped),
        (f"Fitted into {BOX}x{BOX}", fitted),
        (f"Centred by mass in {SIZE}x{SIZE}", to_image(final)),
    ]


def to_image(arr28: np.ndarray) -> Image.Image:
    """A [28, 28] float array in [0, 1] as a mode "L" image (white ink on black)."""
    return Image.fromarray(to_pixels(arr28), mode="L")


def to_pixels(arr28: np.ndarray) -> np.ndarray:
    """A [28, 28] float array in [0, 1] as uint8 grey levels."""
    arr = np.asarray(arr28, dtype=np.float32).reshape(SIZE, SIZE)
    return np.rint(np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8)


def to_png_bytes(arr28: np.ndarray) -> bytes:
    """A 28x28 greyscale PNG of the preprocessed input."""
    return png.encode_grey(to_pixels(arr28))


def preview_data_url(arr28: np.ndarray) -> str:
    """The 28x28 PNG as a data URL for an <img> tag."""
    return png.data_url(to_png_bytes(arr28))
