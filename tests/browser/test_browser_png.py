"""Chromium's own canvas PNGs take the fast decoding path and give Pillow's pixels."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from digits import png as fastpng

DRAW = """(fill) => {
  const canvas = document.createElement('canvas');
  canvas.width = 200;
  canvas.height = 200;
  const ctx = canvas.getContext('2d');
  if (fill) { ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, 200, 200); }
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 16;
  ctx.lineCap = 'round';
  ctx.beginPath(); ctx.moveTo(60, 40); ctx.lineTo(140, 40); ctx.lineTo(90, 170); ctx.stroke();
  return canvas.toDataURL('image/png');
}"""


@pytest.mark.parametrize("white_ground", [True, False])
def test_a_chromium_canvas_decodes_fast_to_pillows_pixels(page, white_ground):
    url = page.evaluate(DRAW, white_ground)
    png = base64.b64decode(url.split(",", 1)[1])
    pixels = fastpng.decode(png, (200, 200))
    assert pixels is not None, "Chromium's PNG fell back to Pillow"
    assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(png))))
    assert pixels[..., 3].min() == (255 if white_ground else 0)  # the ground is as drawn
