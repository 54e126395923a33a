"""digits.preprocess: canvas drawing -> MNIST-like 28x28 input."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digits import mnist, preprocess
from digits.images import open_png
from digits.preprocess import preprocess_steps, preview_data_url, to_mnist, to_png_bytes
from tests.helpers import drawing_png

SEVEN = [(60, 40), (140, 40), (90, 170)]


def draw_seven(mode: str = "RGBA", width: int = 15) -> Image.Image:
    """Black ink; RGBA/LA on transparent ground (a canvas never filled), others on white."""
    ground = {"RGBA": (0, 0, 0, 0), "LA": (0, 0), "RGB": "white", "L": 255}[mode]
    ink = {"RGBA": (0, 0, 0, 255), "LA": (0, 255), "RGB": "black", "L": 0}[mode]
    image = Image.new(mode, (200, 200), ground)
    ImageDraw.Draw(image).line(SEVEN, fill=ink, width=width, joint="curve")
    return image


def centre_of_mass(arr: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(arr.shape)
    return float((arr * rows).sum() / arr.sum()), float((arr * cols).sum() / arr.sum())


def ink_extent(arr: np.ndarray) -> tuple[int, int]:
    """(height, width) of the nonzero pixels' bounding box."""
    rows, cols = np.nonzero(arr)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_output_is_float32_28x28_in_unit_range():
    arr = to_mnist(draw_seven())
    assert arr.shape == (28, 28)
    assert arr.dtype == np.float32
    assert arr.min() == 0.0
    assert arr.max() == pytest.approx(1.0)
    # White ink on black: the corners are background.
    assert arr[0, 0] == 0.0 and arr[-1, -1] == 0.0


@pytest.mark.parametrize("mode", ["LA", "RGB", "L"])
def test_transparent_ground_counts_as_white_paper(mode):
    expected = to_mnist(draw_seven("RGBA"))
    np.testing.assert_allclose(to_mnist(draw_seven(mode)), expected, atol=1 / 255)


def test_palette_image_with_transparency():
    rgba = draw_seven("RGBA")
    palette = rgba.convert("P")  # transparent pixels keep their colour: black
    palette.info["transparency"] = palette.getpixel((0, 0))
    assert palette.getpixel((0, 0)) != palette.getpixel((100, 40))
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    np.testing.assert_allclose(to_mnist(decoded), to_mnist(rgba), atol=1 / 255)


def test_transparent_ink_is_not_ink():
    # Black pixels with alpha 0 are exactly what an erased canvas sends: paper, not ink.
    assert to_mnist(Image.new("RGBA", (200, 200), (0, 0, 0, 0))) is None


@pytest.mark.parametrize("mode, ground", [("RGB", "white"), ("L", 255), ("LA", (255, 255))])
def test_blank_canvas_is_empty(mode, ground):
    assert to_mnist(Image.new(mode, (200, 200), ground)) is None


def test_faint_noise_is_empty():
    noise = np.random.default_rng(0).integers(230, 256, (200, 200), dtype=np.uint8)
    assert to_mnist(Image.fromarray(noise)) is None


@pytest.mark.parametrize("size", [2, 8, 15])
def test_speck_is_empty(size):
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).ellipse([90, 90, 90 + size, 90 + size], fill=0)
    assert to_mnist(image) is None


@pytest.mark.parametrize("length", [40, 60, 150])
def test_short_stroke_with_real_brush_is_a_digit(length):
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([(100, 20), (100, 20 + length)], fill=0, width=15)
    assert to_mnist(image) is not None


def test_longest_side_fits_20_px_keeping_aspect_ratio():
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).rectangle([30, 40, 69, 139], fill=0)  # 40 wide, 100 tall
    arr = to_mnist(image)
    assert ink_extent(arr) == (20, 8)


def test_square_fills_20x20():
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).rectangle([120, 10, 179, 69], fill=0)
    assert ink_extent(to_mnist(image)) == (20, 20)


@pytest.mark.parametrize("corner", [(0, 0), (130, 0), (0, 130), (130, 130)])
def test_position_on_canvas_does_not_matter(corner):
    image = Image.new("L", (200, 200), 255)
    x, y = corner
    ImageDraw.Draw(image).line([(x + 5, y + 5), (x + 60, y + 5), (x + 30, y + 65)], fill=0, width=9)
    arr = to_mnist(image)
    com_y, com_x = centre_of_mass(arr)
    # Placed by integer shifts, like MNIST: the centre of mass is within half a pixel of 14.
    assert abs(com_y - 14) <= 0.5 and abs(com_x - 14) <= 0.5


def test_lopsided_digit_is_centred_by_mass_not_by_box():
    image = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 49, 179], fill=0)  # heavy bar on the left
    draw.rectangle([50, 95, 119, 104], fill=0)  # thin arm to the right
    arr = to_mnist(image)
    cols = np.nonzero(arr.any(axis=0))[0]
    box_centre = (cols.min() + cols.max()) / 2
    assert abs(centre_of_mass(arr)[1] - 14) <= 0.5
    assert box_centre > 15  # the box itself sits right of centre


def best_aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation after the best shift of at most 1 px: centring rounds to whole pixels."""
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return max(np.corrcoef(np.roll(a, s, (0, 1)).ravel(), b.ravel())[0, 1] for s in shifts)


def test_mnist_digits_survive_canvas_rendering():
    images, _labels = mnist.load_fixture()
    errors, correlations = [], []
    for image in images:
        # As a user would: black ink on white, about 150 px tall, anywhere on the canvas.
        canvas = Image.new("L", (200, 200), 255)
        canvas.paste(Image.fromarray(255 - image).resize((150, 150), Image.BILINEAR), (35, 10))
        arr = to_mnist(canvas)
        original = image / 255.0
        errors.append(np.abs(arr - original).mean())
        correlations.append(best_aligned_correlation(arr, original))
    assert np.mean(errors) < 0.04
    assert np.mean(correlations) > 0.95
    assert min(correlations) > 0.8


def test_mnist_digit_itself_is_nearly_unchanged():
    images, _labels = mnist.load_fixture()
    for image in images[:50]:
        arr = to_mnist(Image.fromarray(255 - image))
        assert np.abs(arr - image / 255.0).mean() < 0.02


def test_png_preview_round_trip():
    arr = to_mnist(draw_seven())
    decoded = np.asarray(Image.open(io.BytesIO(to_png_bytes(arr))))
    assert decoded.shape == (28, 28)
    np.testing.assert_allclose(decoded / 255.0, arr, atol=0.5 / 255 + 1e-6)
    url = preview_data_url(arr)
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == to_png_bytes(arr)


def test_steps_end_with_the_model_input():
    image = draw_seven()
    steps = preprocess_steps(image)
    assert len(steps) == 5
    assert all(isinstance(title, str) and title for title, _ in steps)
    final = np.asarray(steps[-1][1]) / 255.0
    np.testing.assert_allclose(final, to_mnist(image), atol=0.5 / 255 + 1e-6)
    assert steps[3][1].size == (12, 20)  # the seven fitted: 20 px tall


def test_steps_of_blank_canvas_stop_early():
    steps = preprocess_steps(Image.new("RGB", (200, 200), "white"))
    assert "Blank" in steps[-1][0]


def test_importing_preprocess_does_not_import_tensorflow():
    code = "import sys, digits.preprocess; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_preview_png_decodes_to_the_same_pixels():
    arr = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    image = Image.open(io.BytesIO(preprocess.to_png_bytes(arr)))
    image.load()
    assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
    assert np.array_equal(np.asarray(image), preprocess.to_pixels(arr))


# The fast ink paths: a canvas's pixels give their ink without Pillow, bit for bit as it would.


def canvas(alpha: np.ndarray) -> np.ndarray:
    """RGBA pixels of a canvas never filled: R = G = B = 0, the drawing in alpha."""
    pixels = np.zeros((*alpha.shape, 4), np.uint8)
    pixels[..., 3] = alpha
    return pixels


def page_canvas(ink: np.ndarray) -> np.ndarray:
    """RGBA pixels as the page sends them: a white ground, black strokes, all opaque grey."""
    pixels = np.full((*ink.shape, 4), 255, np.uint8)
    pixels[..., :3] = (255 - ink)[..., None]
    return pixels


def antialiased(lines, width: int, scale: int = 4) -> np.ndarray:
    """Alpha of strokes drawn at `scale` times the size and box-averaged down: soft edges."""
    big = Image.new("L", (200 * scale, 200 * scale), 0)
    draw = ImageDraw.Draw(big)
    for points in lines:
        draw.line([(x * scale, y * scale) for x, y in points], 255, width * scale, joint="curve")
    return np.asarray(big.resize((200, 200), Image.BOX))


def random_strokes(rng: np.random.Generator) -> np.ndarray:
    strokes = int(rng.integers(1, 5))
    lines = [rng.uniform(-10, 210, (int(rng.integers(2, 7)), 2)).tolist() for _ in range(strokes)]
    alpha = antialiased([[tuple(p) for p in line] for line in lines], int(rng.integers(1, 25)))
    return (alpha * rng.uniform(0.2, 1.0)).astype(np.uint8)  # a translucent brush, at times


def mnist_on_canvas(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(40, 190))
    alpha = Image.new("L", (200, 200), 0)
    scaled = Image.fromarray(digit).resize((size, size), Image.BILINEAR)
    alpha.paste(scaled, tuple(int(v) for v in rng.integers(0, 200 - size + 1, 2)))
    return np.asarray(alpha)


def edge_cases() -> dict[str, np.ndarray]:
    def drawn(shape: str, box, width: int = 1) -> np.ndarray:
        alpha = Image.new("L", (200, 200), 0)
        getattr(ImageDraw.Draw(alpha), shape)(box, fill=255, width=width)
        return np.asarray(alpha)

    return {
        "blank": np.zeros((200, 200), np.uint8),
        "speck": drawn("ellipse", [95, 95, 102, 102]),
        "one pixel": drawn("line", [(100, 100), (100, 100)]),
        "faint everywhere": np.full((200, 200), preprocess.INK_THRESHOLD, np.uint8),
        "all ink": np.full((200, 200), 255, np.uint8),
        "frame on the borders": drawn("rectangle", [0, 0, 199, 199], 3),
        "stroke off the corner": drawn("line", [(-20, -20), (60, 150)], 15),
        "one-pixel vertical": drawn("line", [(199, 0), (199, 199)]),
        "one-pixel horizontal": drawn("line", [(10, 0), (150, 0)]),
        "one-pixel diagonal": drawn("line", [(0, 0), (199, 199)]),
        "seven": np.asarray(draw_seven().getchannel("A")),
        "thin seven": np.asarray(draw_seven(width=1).getchannel("A")),
    }


def canvases() -> list[np.ndarray]:
    rng = np.random.default_rng(42)
    images, _labels = mnist.load_fixture()
    alphas = list(edge_cases().values())
    alphas += [random_strokes(rng) for _ in range(60)]
    alphas += [mnist_on_canvas(digit, rng) for digit in images[:40]]
    return [canvas(alpha) for alpha in alphas] + [page_canvas(ink) for ink in alphas]


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def test_canvas_pixels_take_the_fast_path_and_match_the_general_one(monkeypatch):
    pixels = canvases()
    general = [to_mnist(Image.fromarray(p)) for p in pixels]  # an image: the general path

    def not_called(image):
        raise AssertionError("the general path ran on a canvas's pixels")

    monkeypatch.setattr(preprocess, "ink_image", not_called)
    for p, expected in zip(pixels, general, strict=True):
        assert preprocess.canvas_ink(p) is not None
        assert same(to_mnist(p), expected)
    # blank, speck, one pixel, faint, on each kind of canvas: the rest draw
    assert sum(x is None for x in general) == 8


def test_canvas_png_through_the_fast_decoder_matches_pillows_image():
    for pixels in canvases()[::7]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        drawing = open_png(buffer.getvalue())
        assert isinstance(drawing, np.ndarray)
        assert same(to_mnist(drawing), to_mnist(Image.open(io.BytesIO(buffer.getvalue()))))


def coloured(pixels: np.ndarray, spot: tuple[int, int], channel: int, value: int) -> np.ndarray:
    pixels = pixels.copy()
    pixels[(*spot, channel)] = value
    return pixels


SEVEN_PIXELS = canvas(np.asarray(draw_seven().getchannel("A")))
PAGE_SEVEN = page_canvas(np.asarray(draw_seven().getchannel("A")))
OTHER_PIXELS = {
    "red ink pixel": coloured(SEVEN_PIXELS, (40, 100), 0, 200),
    "green on clear ground": coloured(SEVEN_PIXELS, (0, 0), 1, 1),
    "blue under opaque ink": coloured(SEVEN_PIXELS, (40, 60), 2, 255),
    "a red pixel on the page": coloured(PAGE_SEVEN, (120, 150), 0, 200),
    "a blue tint in the page's ink": coloured(PAGE_SEVEN, (40, 100), 2, 30),
    "one translucent pixel on the page": coloured(PAGE_SEVEN, (199, 199), 3, 254),
    "a white corner on clear ground": np.where(
        np.arange(200)[:, None, None] + np.arange(200)[None, :, None] == 0, 255, SEVEN_PIXELS
    ).astype(np.uint8),
    "white clear ground": np.asarray(Image.open(io.BytesIO(drawing_png(mode="RGBA")))),
    "RGB": np.asarray(draw_seven("RGB")),
    "grey": np.asarray(draw_seven("L")),
}


@pytest.mark.parametrize("why", list(OTHER_PIXELS))
def test_other_pixels_take_the_general_path(why, monkeypatch):
    pixels = OTHER_PIXELS[why]
    expected = to_mnist(Image.fromarray(pixels))
    calls = []
    general = preprocess.ink_image
    monkeypatch.setattr(preprocess, "ink_image", lambda image: calls.append(1) or general(image))
    assert preprocess.canvas_ink(pixels) is None
    assert same(to_mnist(pixels), expected)
    assert calls == [1]


def test_steps_of_canvas_pixels_match_those_of_its_image():
    image_steps = preprocess_steps(draw_seven())
    pixel_steps = preprocess_steps(SEVEN_PIXELS)
    assert [title for title, _ in pixel_steps] == [title for title, _ in image_steps]
    for (_, a), (_, b) in zip(pixel_steps, image_steps, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def png_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks[kind] = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return chunks


PREVIEWS = {
    "seven": lambda: to_mnist(draw_seven()),
    "blank": lambda: np.zeros((28, 28), np.float32),
    "full": lambda: np.ones((28, 28), np.float32),
    "random": lambda: np.random.default_rng(1).random((28, 28)).astype(np.float32),
    "out of range": lambda: np.random.default_rng(2).uniform(-1, 2, (28, 28)).astype(np.float32),
}


@pytest.mark.parametrize("name", list(PREVIEWS))
def test_preview_png_is_valid_and_holds_the_pixels_uncompressed(name):
    arr = PREVIEWS[name]()
    data = to_png_bytes(arr)
    Image.open(io.BytesIO(data)).verify()  # signature, chunk framing and CRCs
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), preprocess.to_pixels(arr))
    rows = zlib.decompress(png_chunks(data)[b"IDAT"])  # checks the stored block and adler32
    expected = np.hstack([np.zeros((28, 1), np.uint8), preprocess.to_pixels(arr)]).tobytes()
    assert rows == expected
