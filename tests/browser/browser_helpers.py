"""Helpers for the browser tests: drawing on the pad like a person, and the common page steps.

MNIST digits become pen paths by thinning them to a one-pixel skeleton and
walking it, so the browser tests draw real handwriting, not straight lines.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import expect

PAD = 200
ADMIN_TOKEN = "browser-test-admin-token"
DESKTOP = {"viewport": {"width": 1280, "height": 900}, "device_scale_factor": 1}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
MNIST_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mnist-test-200.npz"

# Hand-written fallbacks, in pad coordinates.
SEVEN = [[(55, 45), (100, 42), (148, 45), (125, 95), (105, 140), (95, 165)]]
ONE = [[(85, 60), (108, 40), (106, 100), (104, 165)]]

Stroke = list[tuple[float, float]]
SAVED = re.compile(r"Saved as (\S+?)\.")
DIGIT = re.compile(r"^[0-9]$")


def pad_box(page, selector: str = "#pad") -> dict:
    page.locator(selector).scroll_into_view_if_needed()
    return page.locator(selector).bounding_box()


def _screen(box: dict, point: tuple[float, float]) -> tuple[float, float]:
    scale = box["width"] / PAD
    return box["x"] + point[0] * scale, box["y"] + point[1] * scale


def mouse_draw(page, strokes: list[Stroke], steps: int = 1) -> None:
    """Press, move through every point (with `steps` interpolated moves to each), release.

    Each move over the pad costs about one animation frame, so paths are kept short."""
    box = pad_box(page)
    for stroke in strokes:
        page.mouse.move(*_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*_screen(box, point), steps=steps)
        page.mouse.up()


def touch_draw(page, strokes: list[Stroke], steps: int = 4) -> None:
    """Real touch input through the DevTools protocol: the browser turns it into
    pointer events with pointerType "touch" and would scroll the page if allowed."""
    box = pad_box(page)
    cdp = page.context.new_cdp_session(page)
    try:
        for stroke in strokes:
            x, y = _screen(box, stroke[0])
            cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [touch(x, y)]}
            )
            for a, b in zip(stroke, stroke[1:], strict=False):
                for i in range(1, steps + 1):
                    t = i / steps
                    x, y = _screen(box, (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t))
                    cdp.send(
                        "Input.dispatchTouchEvent",
                        {"type": "touchMove", "touchPoints": [touch(x, y)]},
                    )
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def settle(page) -> None:
    """Wait until the page's jQuery requests have finished (quicker than "networkidle")."""
    page.wait_for_function("() => window.jQuery && window.jQuery.active === 0")


def touch(x: float, y: float) -> dict:
    return {"x": x, "y": y, "radiusX": 4, "radiusY": 4, "force": 1, "id": 1}


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    with np.load(MNIST_FIXTURE) as data:
        return data["images"], data["labels"]


def mnist_strokes(image: np.ndarray) -> list[Stroke]:
    """Pen strokes (pad coordinates) tracing the skeleton of a 28x28 MNIST digit."""
    skeleton = thin(image > 100)
    scale = PAD / image.shape[0]
    return [
        [((x + 0.5) * scale, (y + 0.5) * scale) for y, x in path]
        for path in walk(skeleton)
        if len(path) > 1
    ]


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: peel border pixels until a one-pixel-wide skeleton is left."""
    img = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            remove = []
            for y, x in zip(*np.nonzero(img), strict=True):
                p = [
                    img[y - 1, x], img[y - 1, x + 1], img[y, x + 1], img[y + 1, x + 1],
                    img[y + 1, x], img[y + 1, x - 1], img[y, x - 1], img[y - 1, x - 1],
                ]  # fmt: skip
                neighbours = sum(p)
                transitions = sum(p[i] == 0 and p[(i + 1) % 8] == 1 for i in range(8))
                if step == 0:
                    keep = p[0] * p[2] * p[4] or p[2] * p[4] * p[6]
                else:
                    keep = p[0] * p[2] * p[6] or p[0] * p[4] * p[6]
                if 2 <= neighbours <= 6 and transitions == 1 and not keep:
                    remove.append((y, x))
            for y, x in remove:
                img[y, x] = 0
            changed = changed or bool(remove)
    return img[1:-1, 1:-1].astype(bool)


def walk(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """Order skeleton pixels into paths: start at a line end, step to unvisited neighbours."""
    left = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton), strict=True)}
    paths = []
    while left:
        start = min(left, key=lambda p: (_degree(p, left), p))
        path = [start]
        left.discard(start)
        while True:
            y, x = path[-1]
            nxt = [
                (y + dy, x + dx)
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if (y + dy, x + dx) in left
            ]
            if not nxt:
                break
            # Prefer straight (4-connected) steps: they follow the stroke, diagonals cut corners.
            nxt.sort(key=lambda p: abs(p[0] - y) + abs(p[1] - x))
            path.append(nxt[0])
            left.discard(nxt[0])
        paths.append(path)
    return paths


def _degree(p: tuple[int, int], pixels: set) -> int:
    y, x = p
    return sum((y + dy, x + dx) in pixels for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - 1


def ink_bbox(png: bytes, threshold: int = 128) -> tuple[int, int, int, int] | None:
    """Bounding box of the dark pixels of a stored drawing (None if blank)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size == (PAD, PAD), image.size
    dark = np.asarray(image) < threshold
    if not dark.any():
        return None
    ys, xs = np.nonzero(dark)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def save_drawing(page, label: int) -> str:
    """Pick the label with its key, save with Enter, and return the stored name."""
    page.keyboard.press(str(label))
    expect(page.locator("#save")).to_be_enabled()
    page.keyboard.press("Enter")
    status = page.locator("#status")
    expect(status).to_contain_text("Saved as")
    name = SAVED.search(status.inner_text()).group(1)
    # The pad clears for the next drawing.
    expect(page.locator("#undo")).to_be_disabled()
    return name


def mnist_digit(label: int) -> list:
    images, labels = load_mnist()
    return mnist_strokes(images[int(list(labels).index(label))])


def expect_answers(page) -> dict:
    """Wait until both nets show a digit and their bars; return what they said."""
    answers = {}
    for net in ("fnn", "cnn"):
        card = page.locator(f"#net-{net}")
        expect(card.locator("[data-field=digit]")).to_have_text(DIGIT, timeout=15_000)
        expect(card.locator(".prob-row.is-top")).to_have_count(1)
        answers[net] = int(card.locator("[data-field=digit]").inner_text())
    preview = page.locator("#preview")
    assert preview.get_attribute("src").startswith("data:image/png;base64,")
    assert preview.evaluate("img => img.naturalWidth") == 28
    return answers
