"""The fast PNG path gives exactly Pillow's pixels, and leaves every other PNG to Pillow."""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from digits import png as fastpng
from digits.bodies import BadInput
from digits.images import open_png
from tests.helpers import drawing_png

SIZE = (200, 200)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filtered_rows(pixels: np.ndarray, filters: list[int]) -> bytes:
    """The image's rows, row y filtered with filters[y % len(filters)] (PNG filter types 0-4)."""
    height, width, channels = pixels.shape
    prev = np.zeros(width * channels, np.int32)
    out = []
    for y in range(height):
        line = pixels[y].reshape(-1).astype(np.int32)
        left = np.concatenate([np.zeros(channels, np.int32), line[:-channels]])
        up_left = np.concatenate([np.zeros(channels, np.int32), prev[:-channels]])
        kind = filters[y % len(filters)]
        predicted = [0, left, prev, (left + prev) // 2, paeth(left, prev, up_left)][kind]
        out.append(bytes([kind]) + ((line - predicted) % 256).astype(np.uint8).tobytes())
        prev = line
    return b"".join(out)


def encode(pixels: np.ndarray, filters=(0, 1, 2, 3, 4), extra=(), level: int = 6) -> bytes:
    height, width, channels = pixels.shape
    colour = {3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    idat = zlib.compress(filtered_rows(pixels, list(filters)), level)
    # Split the data over three IDAT chunks, as encoders may.
    thirds = [
        idat[: len(idat) // 3],
        idat[len(idat) // 3 : 2 * len(idat) // 3],
        idat[2 * len(idat) // 3 :],
    ]
    body = [chunk(b"IDAT", part) for part in thirds]
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + b"".join(body)
        + chunk(b"IEND", b"")
    )


def pillow_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def noisy_canvas(channels: int, seed: int) -> np.ndarray:
    """Strokes plus noise: every byte value turns up, in every filter's arithmetic."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (200, 200, channels), dtype=np.uint8)
    pixels[50:150, 90:110] = 0  # a solid stroke among the noise
    return pixels


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 2, 3, 1, 0, 2)])
def test_every_filter_type_gives_pillows_pixels(channels, filters):
    png = encode(noisy_canvas(channels, seed=len(filters) + channels), filters)
    pixels = fastpng.decode(png, SIZE)
    assert pixels is not None
    assert np.array_equal(pixels, pillow_pixels(png))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_canvas_drawings_decode_to_pillows_pixels(mode):
    png = drawing_png(width=9, mode=mode)  # Pillow's encoder, its own choice of filters
    pixels = fastpng.decode(png, SIZE)
    assert pixels is not None and pixels.shape == (200, 200, len(mode))
    assert np.array_equal(pixels, pillow_pixels(png))
    assert np.array_equal(np.asarray(open_png(png)), pillow_pixels(png))


def test_stored_and_harmless_chunks_are_fine():
    text = chunk(b"tEXt", b"Software\x00a canvas")
    png = encode(noisy_canvas(4, seed=1), extra=[text, chunk(b"sRGB", b"\x00")], level=0)
    assert np.array_equal(fastpng.decode(png, SIZE), pillow_pixels(png))


def other_pngs() -> dict[str, bytes]:
    """PNGs the fast path must leave to Pillow, by why."""

    def saved(image: Image.Image, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG", **options)
        return buffer.getvalue()

    rgba = Image.fromarray(noisy_canvas(4, seed=2))
    good = encode(noisy_canvas(4, seed=3))
    ihdr_end = 8 + 25
    interlaced_header = struct.pack(">IIBBBBB", 200, 200, 8, 6, 0, 0, 1)
    return {
        "grey": saved(rgba.convert("L")),
        "grey+alpha": saved(rgba.convert("LA")),
        "palette": saved(rgba.convert("P")),
        "16-bit": saved(Image.new("I;16", (200, 200), 1000)),
        # Pillow cannot write Adam7; only the header's flag matters here.
        "interlaced": good.replace(good[8:ihdr_end], chunk(b"IHDR", interlaced_header)),
        "transparency chunk": encode(noisy_canvas(3, seed=4), extra=[chunk(b"tRNS", b"\x00" * 6)]),
        "wrong size": saved(rgba.resize((100, 200))),
        "bad CRC": good[:-13] + bytes([good[-13] ^ 1]) + good[-12:],  # the last IDAT's CRC
        "truncated": good[: len(good) // 2],
        "short data": encode(noisy_canvas(4, seed=5)[:199]).replace(
            struct.pack(">II", 200, 199), struct.pack(">II", 200, 200)
        ),
        "not a PNG": b"GIF89a" + good[6:],
        "short header": good.replace(good[8:ihdr_end], chunk(b"IHDR", good[16:28])),
    }


@pytest.mark.parametrize("why", list(other_pngs()))
def test_other_pngs_are_left_to_pillow(why):
    assert fastpng.decode(other_pngs()[why], SIZE) is None


@pytest.mark.parametrize("why", ["truncated", "short data", "short header"])
def test_damaged_pngs_still_get_pillows_error(why):
    with pytest.raises(BadInput):
        open_png(other_pngs()[why])


def test_pillow_still_decides_what_a_bad_crc_means():
    png = other_pngs()["bad CRC"]  # Pillow reads past a bad CRC in a later IDAT
    assert np.array_equal(np.asarray(open_png(png)), pillow_pixels(png))


def rechunked(png: bytes, index: int, edit) -> bytes:
    """`png` with chunk number `index`'s body passed through `edit`, its CRC made right again."""
    out, pos, number = [png[:8]], 8, 0
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        out.append(chunk(kind, edit(body) if number == index else body))
        pos, number = pos + 12 + length, number + 1
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damage_inside_valid_chunks_never_raises_and_never_disagrees(data):
    base = encode(noisy_canvas(4, seed=7), filters=(0, 1, 2, 3, 4), level=1)
    index = data.draw(st.integers(0, 4), label="chunk")  # IHDR, three IDATs, IEND

    def edit(body: bytes) -> bytes:
        body = bytearray(body)
        for _ in range(data.draw(st.integers(1, 3), label="bytes changed")):
            if body:
                spot = data.draw(st.integers(0, len(body) - 1), label="where")
                body[spot] = data.draw(st.integers(0, 255), label="value")
        return bytes(body)

    png = rechunked(base, index, edit)
    pixels = fastpng.decode(png, SIZE)  # must not raise, whatever the damage
    if pixels is not None:
        assert np.array_equal(pixels, pillow_pixels(png))
