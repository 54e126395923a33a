"""Decoding the canvas's `data:image/png;base64,…` URLs, safely.

Every image that reaches the app goes through `decode_drawing`, so the checks
(base64, PNG signature, size, pixel count) live in one place.
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from digits import png as fastpng
from digits.bodies import BadInput
from digits.preprocess import Drawing

CANVAS_SIZE = (200, 200)
# Pillow decodes lazily: the header gives the size before any pixel is inflated,
# so anything larger than the canvas is refused before it can expand in memory.
MAX_PIXELS = CANVAS_SIZE[0] * CANVAS_SIZE[1]


def decode_drawing(value: object) -> tuple[bytes, Drawing]:
    """The PNG bytes and the decoded drawing (see `open_png`) of a 200×200 canvas data URL."""
    png = png_bytes_from_data_url(value)
    return png, open_png(png)


def png_bytes_from_data_url(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadInput("imageBase64 is missing")
    if not value.startswith(fastpng.DATA_URL_PREFIX):
        raise BadInput("imageBase64 must be a data:image/png;base64 URL")
    try:
        png = base64.b64decode(value[len(fastpng.DATA_URL_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("imageBase64 is not valid base64") from None
    if not png.startswith(fastpng.SIGNATURE):
        raise BadInput("imageBase64 is not a PNG image")
    return png


def open_png(png: bytes) -> Drawing:
    """The canvas's uint8 [200, 200, 3 or 4] pixels if the fast decoder reads it, else an image.

    Pixels rather than an image: `preprocess.to_mnist` takes either, and reads a canvas's ink
    (the page's opaque grey, or black on a clear ground) straight from them, with no 200×200
    Pillow image.
    """
    pixels = fastpng.decode(png, CANVAS_SIZE)
    if pixels is not None:  # what canvases send: the same pixels as Pillow's, 4x faster
        return pixels
    try:
        image = Image.open(io.BytesIO(png), formats=["PNG"])
    except Image.DecompressionBombError:
        raise BadInput("the image has far too many pixels; it must be 200×200") from None
    except Exception:
        raise BadInput("imageBase64 is not a readable PNG image") from None
    if image.size != CANVAS_SIZE or image.width * image.height > MAX_PIXELS:
        raise BadInput(f"the image must be 200×200 pixels, not {image.width}×{image.height}")
    try:
        image.load()
    except Exception:
        raise BadInput("imageBase64 is a damaged PNG image") from None
    return image
