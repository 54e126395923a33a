"""Collect mode end to end: draw with mouse and finger, save, and find the drawing in storage."""

from __future__ import annotations

import json
import re

from browser_helpers import (
    SEVEN,
    ink_bbox,
    load_mnist,
    mnist_strokes,
    mouse_draw,
    save_drawing,
    touch_draw,
)
from playwright.sync_api import expect


def stored(storage_root, label: int, name: str) -> tuple[bytes, dict]:
    folder = storage_root / "drawings" / str(label)
    return (folder / f"{name}.png").read_bytes(), json.loads((folder / f"{name}.json").read_text())


def test_mouse_drawing_is_saved_as_the_drawing(page, live_server, storage_root):
    images, labels = load_mnist()
    index = int(list(labels).index(7))
    strokes = mnist_strokes(images[index])
    page.goto(live_server.url + "/collect")
    mouse_draw(page, strokes)
    name = save_drawing(page, 7)

    png, meta = stored(storage_root, 7, name)
    assert meta["label"] == "7" and meta["source"] == "collect"
    box = ink_bbox(png)
    assert box is not None, "the stored drawing is blank"
    xs = [x for stroke in strokes for x, _ in stroke]
    ys = [y for stroke in strokes for _, y in stroke]
    # Ink lies where the pen went, widened by half the 16 px brush and a little slack.
    assert abs(box[0] - min(xs)) < 14 and abs(box[2] - max(xs)) < 14, (box, min(xs), max(xs))
    assert abs(box[1] - min(ys)) < 14 and abs(box[3] - max(ys)) < 14, (box, min(ys), max(ys))


def test_touch_drawing_is_saved(phone_page, live_server, storage_root):
    page = phone_page
    page.goto(live_server.url + "/collect")
    touch_draw(page, SEVEN)
    expect(page.locator("#undo")).to_be_enabled()
    name = save_drawing(page, 7)

    png, _ = stored(storage_root, 7, name)
    box = ink_bbox(png)
    assert box is not None, "the stored touch drawing is blank"
    assert 40 < box[0] < 70 and 130 < box[2] < 165 and 30 < box[1] < 55 and 150 < box[3] < 180, box


def test_counts_update_after_saving(page, live_server):
    page.goto(live_server.url + "/collect")
    count = page.locator('[data-count="4"]')
    expect(count).to_contain_text("drawing")
    before = int(count.inner_text().split()[0])
    total_before = int(page.locator("#total-count").inner_text())

    mouse_draw(page, [[(100, 40), (60, 120), (140, 120)], [(120, 70), (120, 170)]])
    save_drawing(page, 4)

    expect(count).to_have_text(re.compile(rf"^{before + 1} drawings?$"))
    expect(page.locator("#total-count")).to_have_text(str(total_before + 1))


def test_the_total_says_how_many_are_not_a_digit(page, live_server):
    """The total holds "not a digit" drawings that no digit's count shows: it says so."""
    counts = {**{str(d): 2 for d in range(10)}, "none": 3}
    page.route(
        "**/api/dataset/counts", lambda route: route.fulfill(json={"counts": counts, "total": 23})
    )
    page.goto(live_server.url + "/collect")
    expect(page.locator("#counts-title")).to_have_text(
        "Drawings collected so far: 23 (3 not a digit)"
    )
    expect(page.locator('[data-count="4"]')).to_have_text("2 drawings")

    counts["none"] = 0  # none: nothing to explain
    page.route(
        "**/api/dataset/counts", lambda route: route.fulfill(json={"counts": counts, "total": 20})
    )
    page.reload()
    expect(page.locator("#counts-title")).to_have_text("Drawings collected so far: 20")


def test_rarest_digit_is_suggested(page, live_server):
    page.goto(live_server.url + "/collect")
    nudge = page.locator("#nudge")
    expect(nudge).to_be_visible()
    counts = page.evaluate(
        "() => Array.from({length: 10}, (_, d) =>"
        " parseInt(document.querySelector('[data-count=\"' + d + '\"]').textContent))"
    )
    rarest = counts.index(min(counts))
    if len(set(counts)) > 1:
        expect(nudge).to_contain_text(f"fewest {rarest}s")
        expect(page.locator(f"#label-btn-{rarest}")).to_have_class(re.compile("is-rarest"))
    # With nothing chosen yet, the page starts people on the rarest digit.
    expect(page.locator(f"#label-{rarest}")).to_be_checked()


def test_shortcuts_undo_and_clear(page, live_server):
    page.goto(live_server.url + "/collect")
    mouse_draw(page, SEVEN + [[(60, 110), (140, 110)]] + [[(60, 150), (140, 150)]])
    page.keyboard.press("Control+z")
    page.keyboard.press("Backspace")  # undoes one stroke too, never the whole drawing
    expect(page.locator("#undo")).to_be_enabled()  # one stroke left
    page.keyboard.press("Delete")
    expect(page.locator("#undo")).to_be_disabled()
    expect(page.locator("#save")).to_be_disabled()


def test_save_error_is_shown_and_drawing_kept(page, live_server):
    page.goto(live_server.url + "/collect")
    # The server cannot be reached: a person must be told, and keep the drawing.
    page.route("**/hook", lambda route: route.abort("connectionrefused"))
    mouse_draw(page, SEVEN)
    page.keyboard.press("3")
    page.click("#save")
    expect(page.locator("#status")).to_contain_text("can’t reach the server")
    expect(page.locator("#undo")).to_be_enabled()
