"""Stats, dataset, the static pages, navigation and screenshots of every page."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from browser_helpers import (
    ADMIN_TOKEN,
    DESKTOP,
    PHONE,
    SEVEN,
    expect_answers,
    mnist_digit,
    mouse_draw,
    save_drawing,
    settle,
)
from PIL import Image
from playwright.sync_api import expect

PAGES = ["/", "/collect", "/stats", "/dataset", "/models", "/internals", "/about"]

CANVAS_HAS_INK = """c => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) return true; }
  return false;
}"""


def test_unknown_page_is_a_friendly_404(page, live_server):
    response = page.goto(live_server.url + "/no-such-page")
    assert response.status == 404
    expect(page.locator("h1")).to_contain_text("does not exist")


def test_the_json_document_gets_the_sites_icon(page, live_server):
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    page.goto(live_server.url + "/api/openapi.json")
    page.wait_for_timeout(300)
    assert missing == []
    icon = page.request.get(live_server.url + "/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml")


def test_stats_charts_show_feedback(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(7))
    answers = expect_answers(page)
    page.locator(f'#feedback-answers button[data-answer="{answers["cnn"]}"]').click()
    expect(page.locator("#status")).to_contain_text("Thanks")

    page.goto(live_server.url + "/stats")
    expect(page.locator("#stats-body")).to_be_visible()
    expect(page.locator("[data-total=feedback]")).not_to_have_text(re.compile(r"^[–0]$"))
    page.wait_for_timeout(600)  # let the chart animation finish
    for chart in ("#timeline-chart", "#recall-chart"):
        assert page.locator(chart).evaluate(CANVAS_HAS_INK), f"{chart} is blank"
    # The confusion matrix counts the CNN's answer in the row of the true digit.
    cell = page.locator("#confusion-cnn tbody tr").nth(answers["cnn"]).locator("td")
    assert int(cell.nth(answers["cnn"]).inner_text()) >= 1


def test_recall_of_zero_shows_a_bar_and_no_data_shows_none(page, live_server):
    no_data = [None] * 10
    stats = {
        "totals": {"feedback": 2, "fnn": {"correct": 1, "total": 2, "accuracy": 0.5}, "cnn": {}},
        "timeline": [{"date": "2026-11-24", "net": "fnn", "version": "original", "accuracy": 0.5}],
        "per_digit": {"fnn": [0.0, 1.0, *no_data[2:]], "cnn": no_data},
        "confusion": {},
        "versions": [],
    }
    page.route("**/api/stats", lambda route: route.fulfill(json=stats))
    page.goto(live_server.url + "/stats")
    expect(page.locator("#charts")).to_be_visible()
    page.wait_for_timeout(600)  # let the chart animation finish
    heights = page.evaluate(
        "() => Chart.getChart('recall-chart').getDatasetMeta(0).data.map(bar => bar.height)"
    )
    assert heights[0] > 0  # 0% recall: a stub, not nothing
    assert heights[1] > heights[0]
    assert not any(h > 0 for h in heights[2:])  # no drawings of these digits: no bar (NaN)


def test_versions_of_one_day_each_have_their_own_point(page, live_server):
    """Two FNN versions and the CNN, all right every time on one day: three places, not one."""

    def point(net, version, time):
        day = "2026-11-24"
        return {"date": day, "time": f"{day}T{time}:00+00:00", "net": net, "version": version,
                "correct": 2, "total": 2, "accuracy": 1.0}  # fmt: skip

    timeline = [
        point("fnn", "original", "09:30"),
        point("fnn", "v1", "15:00"),
        point("cnn", "original", "11:20"),
    ]
    totals = {"feedback": 4, "fnn": {"correct": 4, "total": 4, "accuracy": 1.0}, "cnn": {}}
    open_stats_with(page, live_server, timeline, totals)
    spots = page.evaluate(
        """() => Chart.getChart('timeline-chart').data.datasets.map((d, i) =>
             Chart.getChart('timeline-chart').getDatasetMeta(i).data.map(p => [p.x, p.y]))"""
    )
    places = [tuple(round(v) for v in xy) for points in spots for xy in points]
    assert len(places) == 3 and len(set(places)) == 3, places
    assert places[0][0] < places[2][0] < places[1][0]  # in the order they served


def test_an_fnn_dot_shows_on_a_cnn_diamond_at_the_same_spot(page, live_server):
    """The API lists CNN before FNN; both nets answer the same predictions, so with equal
    accuracy their points share a spot. The smaller FNN dot must be drawn over the diamond."""

    def point(net):
        return {"date": "2026-11-24", "time": "2026-11-24T10:00:00+00:00", "net": net,
                "version": "original", "correct": 1, "total": 2, "accuracy": 0.5}  # fmt: skip

    timeline = [point("cnn"), point("fnn")]  # sorted as digits/stats.timeline sorts
    open_stats_with(page, live_server, timeline, {"feedback": 2, "fnn": {}, "cnn": {}})
    red, green, blue = page.evaluate(
        """() => {
             const chart = Chart.getChart('timeline-chart');
             const p = chart.getDatasetMeta(0).data[0];
             const r = window.devicePixelRatio;
             return Array.from(chart.ctx.getImageData(p.x * r, p.y * r, 1, 1).data.slice(0, 3));
           }"""
    )
    assert (red, green, blue) == (0x0D, 0x6E, 0xFD)  # FNN blue, not the CNN's pink


def test_stats_page_without_feedback_says_so(page, live_server):
    empty = {
        "totals": {"feedback": 0, "fnn": {}, "cnn": {}},
        "timeline": [],
        "per_digit": {},
        "confusion": {},
        "versions": [],
    }
    page.route("**/api/stats", lambda route: route.fulfill(json=empty))
    page.goto(live_server.url + "/stats")
    expect(page.locator("#no-feedback")).to_be_visible()
    expect(page.locator("#charts")).to_be_hidden()


def test_a_read_the_server_sheds_while_busy_is_asked_again(page, live_server):
    """A 503 with Retry-After (digits/public.py) is retried; the page shows the answer."""
    empty = {"totals": {"feedback": 0}, "timeline": [], "per_digit": {}, "versions": []}
    asked = []

    def busy_then_empty(route):
        asked.append(1)
        if len(asked) < 3:
            route.fulfill(status=503, headers={"Retry-After": "0"}, json={"error": "busy"})
        else:
            route.fulfill(json=empty)

    page.route("**/api/stats", busy_then_empty)
    page.goto(live_server.url + "/stats")
    expect(page.locator("#no-feedback")).to_be_visible()
    assert len(asked) == 3


def test_a_read_still_busy_after_the_retries_says_so(page, live_server):
    asked = []

    def busy(route):
        asked.append(1)
        route.fulfill(status=503, headers={"Retry-After": "0"}, json={"error": "busy right now"})

    page.route("**/api/stats", busy)
    page.goto(live_server.url + "/stats")
    expect(page.locator("#status")).to_contain_text("busy right now")
    assert len(asked) == 4  # the first ask and three more


def test_dataset_gallery_shows_saved_drawing(page, live_server):
    page.goto(live_server.url + "/collect")
    mouse_draw(page, SEVEN)
    name = save_drawing(page, 7)

    page.goto(live_server.url + "/dataset")
    figure = page.locator(f'figure[data-name="{name}"]')
    expect(figure).to_be_visible()
    expect(figure.locator("img")).to_have_js_property("complete", True)
    assert figure.locator("img").evaluate("img => img.naturalWidth") == 200
    # Filtering by another label hides it.
    page.select_option("#label-filter", "3")
    expect(figure).to_have_count(0)
    page.select_option("#label-filter", "7")
    expect(figure).to_be_visible()
    expect(figure.locator("button.delete")).to_be_hidden()  # no token, no delete


def test_a_gallery_image_shed_while_busy_is_asked_again(page, live_server):
    page.goto(live_server.url + "/collect")
    mouse_draw(page, SEVEN)
    name = save_drawing(page, 7)
    asked = []

    def busy_once(route):
        asked.append(route.request.url)
        if len(asked) == 1:
            route.fulfill(status=503, headers={"Retry-After": "1"}, body="busy")
        else:
            route.continue_()

    page.route(f"**/api/dataset/image/{name}*", busy_once)
    page.goto(live_server.url + "/dataset")
    image = page.locator(f'figure[data-name="{name}"] img')
    expect(image).to_have_js_property("naturalWidth", 200)
    assert len(asked) == 2 and asked[1].endswith("?try=1")


def test_dataset_admin_token(page, live_server, storage_root):
    page.goto(live_server.url + "/collect")
    mouse_draw(page, SEVEN)
    name = save_drawing(page, 7)
    page.goto(live_server.url + "/dataset")
    page.locator("#admin summary").click()

    page.fill("#admin-token", "wrong-token")
    page.click("#admin-form button[type=submit]")
    page.click("#export")
    expect(page.locator("#admin-status")).to_contain_text("403")

    page.fill("#admin-token", ADMIN_TOKEN)
    page.click("#admin-form button[type=submit]")
    with page.expect_download() as download:
        page.click("#export")
    assert download.value.suggested_filename.endswith(".zip")

    page.on("dialog", lambda dialog: dialog.accept())
    figure = page.locator(f'figure[data-name="{name}"]')
    figure.locator("button.delete").click()
    expect(figure).to_have_count(0)
    assert not (storage_root / "drawings" / "7" / f"{name}.json").exists()


def test_models_page_without_or_with_metrics(page, live_server):
    page.goto(live_server.url + "/models")
    for net in ("fnn", "cnn"):
        card = page.locator(f"#card-{net}")
        expect(card).to_contain_text(re.compile(r"Not trained yet|Parameters"))


def test_internals_shows_preprocessing_pictures(page, live_server):
    page.goto(live_server.url + "/internals")
    steps = page.locator("#steps img")
    expect(steps.first).to_be_visible()
    assert steps.count() >= 3
    for i in range(steps.count()):
        assert steps.nth(i).get_attribute("src").startswith("data:image/png;base64,")


def check_navigation(page, path: str) -> None:
    links = page.locator("nav[aria-label=Main] a.nav-link")
    hrefs = {links.nth(i).get_attribute("href") for i in range(links.count())}
    assert hrefs == set(PAGES), path
    expect(page.locator("nav a[aria-current=page]")).to_have_count(1)


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_every_page_loads_and_screenshots(browser, live_server, screenshots_dir, device):
    """Every page loads and links every other; as a person sees it, in screenshots/."""
    # Phone at 2x, not 3x: the pictures are as telling and far quicker to encode.
    options = DESKTOP if device == "desktop" else {**PHONE, "device_scale_factor": 2}
    context = browser.new_context(**options)
    page = context.new_page()
    try:
        for path in PAGES:
            response = page.goto(live_server.url + path)
            assert response.status == 200, path
            check_navigation(page, path)
            settle(page)
            if path in ("/", "/collect"):
                mouse_draw(page, mnist_digit(7))
                page.wait_for_timeout(300)  # past the debounce
                settle(page)
            if path == "/stats":
                page.wait_for_timeout(500)  # the charts animate in
            name = "home" if path == "/" else path.strip("/")
            page.screenshot(path=screenshots_dir / f"{device}-{name}.png", full_page=True)
    finally:
        context.close()


def test_dataset_pager_moves_one_page_at_a_time(page, live_server):
    page.goto(live_server.url + "/collect")
    for label in (1, 2, 3):
        mouse_draw(page, SEVEN)
        save_drawing(page, label)

    def one_per_page(route):  # three drawings make three pages of one
        route.continue_(url=route.request.url.replace("per_page=48", "per_page=1"))

    page.route("**/api/dataset?*", one_per_page)
    page.goto(live_server.url + "/dataset")
    expect(page.locator("#page-info")).to_contain_text("Page 1 of")
    pages = int(page.locator("#page-info").inner_text().split()[-1])
    page.locator("#next").dblclick()
    expect(page.locator("#page-info")).to_have_text(f"Page 2 of {pages}")
    page.wait_for_timeout(300)
    expect(page.locator("#page-info")).to_have_text(f"Page 2 of {pages}")
    for _ in range(pages + 2):  # more clicks than pages: it stops at the last
        if page.locator("#next").is_enabled():
            page.locator("#next").click()
        page.wait_for_timeout(100)
    expect(page.locator("#page-info")).to_have_text(f"Page {pages} of {pages}")
    expect(page.locator("#gallery figure")).to_have_count(1)


def test_a_delete_updates_the_count_and_refills_the_page(page, live_server):
    page.goto(live_server.url + "/collect")
    for label in (4, 5, 6):  # at least two left after the delete: no "1 drawings" here
        mouse_draw(page, SEVEN)
        newest = save_drawing(page, label)

    def one_per_page(route):
        route.continue_(url=route.request.url.replace("per_page=48", "per_page=1"))

    page.route("**/api/dataset?*", one_per_page)
    page.goto(live_server.url + "/dataset")
    expect(page.locator("#page-info")).to_contain_text("Page 1 of")
    total = int(page.locator("#status").inner_text().split()[0])
    page.locator("#admin summary").click()
    page.fill("#admin-token", ADMIN_TOKEN)
    page.click("#admin-form button[type=submit]")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'figure[data-name="{newest}"] button.delete').click()

    expect(page.locator("#admin-status")).to_contain_text(f"Deleted {newest}.")
    expect(page.locator("#status")).to_have_text(f"{total - 1} drawings · page 1 of {total - 1}")
    expect(page.locator("#page-info")).to_have_text(f"Page 1 of {total - 1}")
    expect(page.locator("#gallery figure")).to_have_count(1)  # the next drawing moved up


@pytest.mark.parametrize(
    ("label", "said"),
    [("", "1 drawing"), ("none", "1 “not a digit” drawing"), ("8", "1 drawing of an 8")],
)
def test_one_drawing_is_counted_in_the_singular(page, live_server, label, said):
    item = {"name": "x", "label": label or "3", "created": None, "source": "collect",
            "url": "/static/img/blank-28.png", "delete_url": "/api/dataset/x"}  # fmt: skip
    one = {"items": [item], "page": 1, "pages": 1, "total": 1}
    page.route("**/api/dataset?*", lambda route: route.fulfill(json=one))
    page.goto(live_server.url + "/dataset")
    if label:
        page.select_option("#label-filter", label)
    expect(page.locator("#status")).to_have_text(f"{said} · page 1 of 1")


def edge_shading(locator) -> tuple[float, float]:
    """How much darker the left and the right edge of an element are than its middle."""
    image = Image.open(io.BytesIO(locator.screenshot())).convert("L")
    columns = np.asarray(image, dtype=float).mean(axis=0)
    middle = float(np.median(columns))
    return middle - float(columns[:4].mean()), middle - float(columns[-4:].mean())


def test_a_table_wider_than_a_phone_shows_that_it_scrolls(browser, live_server):
    """At 375 px the layer tables scroll sideways: a shadow marks the side with more columns."""
    phone = {"viewport": {"width": 375, "height": 800}, "device_scale_factor": 1}
    context = browser.new_context(**phone, bypass_csp=True)  # for the style tag below
    page = context.new_page()
    try:
        page.goto(live_server.url + "/models")
        # No text, so that only the shading differs between the edges and the middle.
        page.add_style_tag(content="* { color: transparent !important; }")
        wide = page.locator("#card-cnn .table-responsive").last
        assert wide.evaluate("el => el.scrollWidth > el.clientWidth + 40")
        left, right = edge_shading(wide)
        assert right > 8 and abs(left) < 3, (left, right)  # more to the right only
        wide.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
        left, right = edge_shading(wide)
        assert left > 8 and abs(right) < 3, (left, right)  # at the end: more to the left only
    finally:
        context.close()


def open_stats_with(page, live_server, timeline: list[dict], totals: dict) -> None:
    """The Stats page drawn from this timeline (the API answer is made up), animation done."""
    stats = {"totals": totals, "timeline": timeline, "per_digit": {}, "confusion": {},
             "versions": []}  # fmt: skip
    page.route("**/api/stats", lambda route: route.fulfill(json=stats))
    page.goto(live_server.url + "/stats")
    expect(page.locator("#charts")).to_be_visible()
    page.wait_for_timeout(600)  # let the chart animation finish
