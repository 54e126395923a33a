"""Predict page: live answers from both nets, feedback, and honest failure messages."""

from __future__ import annotations

from browser_helpers import SEVEN, expect_answers, mnist_digit, mouse_draw, touch_draw
from playwright.sync_api import expect


def test_predict_and_confirm(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(7))
    answers = expect_answers(page)
    expect(page.locator("#status")).to_contain_text(str(answers["cnn"]))

    feedback = page.locator("#feedback")
    expect(feedback).to_be_visible()
    expect(page.locator("#consent")).not_to_be_checked()  # a pre-ticked box is not consent
    # Say the CNN was right (the first answer button is "Yes" or the first net's digit).
    page.locator(f'#feedback-answers button[data-answer="{answers["fnn"]}"]').click()
    expect(page.locator("#status")).to_contain_text("Thanks! Recorded as a")
    expect(feedback).to_be_hidden()


def test_predict_and_correct(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(1))
    expect_answers(page)
    page.click("#answer-no")
    expect(page.locator("#picker")).to_be_visible()
    page.locator('#picker button[data-answer="1"]').click()
    expect(page.locator("#status")).to_contain_text("Recorded as a 1")


def test_no_request_for_an_empty_canvas(page, live_server):
    predicts = []
    page.on("request", lambda r: predicts.append(r) if r.url.endswith("/api/predict") else None)
    page.goto(live_server.url + "/")
    mouse_draw(page, [[(60, 50), (140, 50), (100, 170)]])
    page.keyboard.press("Control+z")  # undone before the debounce ran out
    page.wait_for_timeout(600)
    assert predicts == []
    expect(page.locator("#status")).to_contain_text("Draw a digit to start")


def test_only_the_newest_answer_is_shown(page, live_server):
    """A late answer to an older drawing must not replace the answer to the newer one."""
    held = []
    ids = []

    def hold_first(route):
        if not held:
            held.append(route)  # answered only after the second drawing's answer is shown
        else:
            route.continue_()

    page.on(
        "response", lambda r: ids.append(r.json()["id"]) if r.url.endswith("/predict") else None
    )
    page.goto(live_server.url + "/")
    page.route("**/api/predict", hold_first)
    mouse_draw(page, [[(100, 40), (100, 170)]])
    page.wait_for_timeout(400)  # the first request is now in flight
    mouse_draw(page, [[(60, 110), (140, 110)]])
    expect_answers(page)
    held[0].continue_()
    page.wait_for_timeout(500)
    assert len(ids) == 2
    newest = ids[0]  # the second drawing's answer arrived first; the held one came last
    expect(page.locator("#feedback")).to_have_attribute("data-prediction-id", newest)


def test_server_down_is_said_and_drawing_kept(page, live_server):
    page.goto(live_server.url + "/")
    page.route("**/api/predict", lambda route: route.abort("connectionrefused"))
    mouse_draw(page, SEVEN)
    status = page.locator("#status")
    expect(status).to_contain_text("can’t reach the server")
    expect(status).to_have_attribute("role", "status")
    expect(page.locator("#undo")).to_be_enabled()


def test_server_error_is_said(page, live_server):
    page.goto(live_server.url + "/")
    page.route(
        "**/api/predict",
        lambda route: route.fulfill(status=503, json={"error": "models are loading"}),
    )
    mouse_draw(page, SEVEN)
    expect(page.locator("#status")).to_contain_text("models are loading (HTTP 503)")


def test_phone_touch_drawing_does_not_scroll(phone_page, live_server):
    page = phone_page
    page.goto(live_server.url + "/")
    # Make the page scrollable in both directions around the pad first.
    page.evaluate("window.scrollTo(0, 120)")
    before = page.evaluate("window.scrollY")
    assert before > 0, "the phone page should be taller than the screen"
    # An upward swipe over the pad would scroll the page down if touch-action allowed it.
    touch_draw(page, [[(100, 180), (100, 120), (100, 60), (100, 20)]])
    page.wait_for_timeout(200)
    assert page.evaluate("window.scrollY") == before
    expect(page.locator("#undo")).to_be_enabled()


def test_phone_canvas_is_sharp(phone_page, live_server):
    page = phone_page
    page.goto(live_server.url + "/")
    sizes = page.locator("#pad").evaluate(
        "c => ({backing: c.width, css: c.getBoundingClientRect().width, ratio: devicePixelRatio})"
    )
    assert sizes["ratio"] == 3
    assert abs(sizes["backing"] - sizes["css"] * 3) <= 1, sizes
    assert sizes["css"] <= 390 - 24, "the pad must fit a phone screen"


def test_after_a_failure_old_answers_go_and_try_again_resends(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, [[(100, 40), (100, 170)]])
    expect_answers(page)
    page.route("**/api/predict", lambda route: route.fulfill(status=500, json={"error": "boom"}))
    mouse_draw(page, [[(60, 110), (140, 110)]])
    expect(page.locator("#status")).to_contain_text("boom (HTTP 500). Your drawing is kept.")
    # The answers on show were for the drawing before this stroke: they are gone.
    for net in ("fnn", "cnn"):
        expect(page.locator(f"#net-{net} [data-field=digit]")).to_have_text("?")
    page.unroute("**/api/predict")
    expect(page.locator("#retry")).to_be_visible()
    page.keyboard.press("Enter")  # the same drawing again, no stroke needed
    expect_answers(page)
    expect(page.locator("#retry")).to_be_hidden()


def test_digit_keys_send_one_answer_while_one_is_on_its_way(page, live_server):
    sent = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/feedback") else None)
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(1))
    expect_answers(page)
    page.click("#answer-no")
    page.keyboard.press("4")
    page.keyboard.press("5")
    expect(page.locator("#status")).to_contain_text("Recorded as a 4")
    assert len(sent) == 1
    # The card is gone; keyboard focus moves to the drawing area, not the top of the page.
    assert page.evaluate("document.activeElement.id") == "pad"


def test_eight_takes_an(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(1))
    expect_answers(page)
    page.click("#answer-no")
    page.locator('#picker button[data-answer="8"]').click()
    expect(page.locator("#status")).to_contain_text("Recorded as an 8.")


def test_an_answer_the_server_refuses_closes_the_question(page, live_server):
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(1))
    expect_answers(page)
    page.route(
        "**/api/feedback",
        lambda route: route.fulfill(status=409, json={"error": "already answered"}),
    )
    page.locator("#feedback-answers button[data-answer]").first.click()
    expect(page.locator("#status")).to_contain_text("You already answered")
    expect(page.locator("#feedback")).to_be_hidden()  # no card of dead buttons left behind


def test_a_slow_server_is_not_called_unreachable(page, live_server):
    page.clock.install()
    page.goto(live_server.url + "/")
    page.route("**/api/predict", lambda route: None)  # never answered
    mouse_draw(page, SEVEN)
    page.clock.run_for(1_000)  # past the debounce: the request leaves
    expect(page.locator("#status")).to_contain_text("Recognising")
    page.clock.run_for(21_000)  # past the 20 s timeout
    expect(page.locator("#status")).to_contain_text("took too long to answer")


def test_the_consent_choice_is_remembered(page, live_server):
    """Unticked at first; ticked then unticked, it stays unticked on the next visit, and is
    sent so."""
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(7))
    expect_answers(page)
    expect(page.locator("#consent")).not_to_be_checked()
    page.locator("#consent").check()
    page.locator("#consent").uncheck()

    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(7))
    answers = expect_answers(page)
    expect(page.locator("#consent")).not_to_be_checked()
    with page.expect_request("**/api/feedback") as sent:
        page.locator(f'#feedback-answers button[data-answer="{answers["cnn"]}"]').click()
    assert sent.value.post_data_json["consent"] is False
    expect(page.locator("#status")).to_contain_text("will not be used for training")

    page.reload()  # ticking it again is remembered too
    mouse_draw(page, mnist_digit(7))
    expect_answers(page)
    page.locator("#consent").check()
    page.goto(live_server.url + "/")
    expect(page.locator("#consent")).to_be_checked()


def test_a_learned_version_says_it_learned_from_everyone(page, live_server):
    """The trainer learns from all users' feedback, not only from this visitor's."""

    def as_if_learned(route):
        answer = route.fetch().json()
        answer["versions"]["cnn"]["current"] = "p20260101T000000000000-deadbeef"
        answer["original"] = {"cnn": answer["cnn"]}
        route.fulfill(json=answer)

    page.route("**/api/predict", as_if_learned)
    page.goto(live_server.url + "/")
    mouse_draw(page, mnist_digit(7))
    expect_answers(page)
    version = page.locator("#net-cnn [data-field=version]")
    expect(version).to_have_text(
        "Model version: p20260101T000000000000-deadbeef (retrained from everyone\u2019s feedback)"
    )
