"""The predict fast path (digits/fastpath.py) answers exactly as the Flask view does, or not at all.

Each test sends the same request to two apps on the same storage: one with the fast path (the
default), one with FAST_PREDICT=off, where the Flask view answers everything.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from digits import predict, predictions
from tests.helpers import data_url, drawing_png, new_app

VARYING_FIELDS = ("id",)  # each prediction gets a new id; everything else must match
PAGE_DRAWING = drawing_png(mode="RGBA", ground="white")  # what the page's canvas sends


class Lines(io.StringIO):
    @property
    def lines(self) -> list[dict]:
        return [json.loads(text) for text in self.getvalue().splitlines()]


def make_pair(storage_dir, **config) -> tuple:
    """(fast app, Flask-only app), each with its request log captured."""
    settings = {"MODEL_WATCH": "off", **config}
    fast = new_app(storage_dir, **settings)
    slow = new_app(storage_dir, **settings, FAST_PREDICT="off")
    for app in (fast, slow):
        if "request_log" in app.extensions:
            app.extensions["request_log"].stream = Lines()
    return fast, slow


def never_the_view(app) -> None:
    """Make the Flask view fail loudly, so a 200 can only come from the fast path."""

    def view():
        raise AssertionError("the Flask view answered a prediction the fast path should take")

    app.view_functions["api.predict"] = view


def answer(app, **request) -> tuple[int, dict, dict | None]:
    response = app.test_client().post("/api/predict", **request)
    headers = dict(response.headers)
    rid = headers.pop("X-Request-ID", None)
    assert rid is None or len(rid) == 32
    body = response.get_json(silent=True)
    for field in VARYING_FIELDS:
        if isinstance(body, dict):
            body.pop(field, None)
    return response.status_code, headers, body


def log_lines(app) -> list[dict]:
    lines = app.extensions["request_log"].stream.lines
    return [{k: v for k, v in x.items() if k not in ("ms", "request_id")} for x in lines]


@pytest.mark.parametrize(
    "png",
    [
        PAGE_DRAWING,
        drawing_png(mode="RGBA"),  # a canvas never filled: black ink on a clear ground
        drawing_png(),  # RGB: Pillow's path
        drawing_png(lines=(((100, 30), (100, 170)),), mode="RGBA", ground="white"),
        drawing_png(lines=(), mode="RGBA", ground="white"),  # blank: no net runs
    ],
)
def test_a_drawing_gets_the_same_answer_from_both(storage_dir, png):
    fast, slow = make_pair(storage_dir)
    never_the_view(fast)
    status, headers, body = answer(fast, json={"imageBase64": data_url(png)})
    assert status == 200 and "probabilities" in body["cnn"]
    assert (status, headers, body) == answer(slow, json={"imageBase64": data_url(png)})
    assert log_lines(fast) == log_lines(slow) == [
        {"event": "request", "method": "POST", "path": "/api/predict", "status": 200,
         "client": "127.0.0.1"}
    ]  # fmt: skip


def test_the_fast_answer_is_byte_for_byte_jsonify(storage_dir):
    fast, slow = make_pair(storage_dir)
    url = data_url(PAGE_DRAWING)
    fast_bytes = fast.test_client().post("/api/predict", json={"imageBase64": url}).data
    slow_bytes = slow.test_client().post("/api/predict", json={"imageBase64": url}).data
    ids = [json.loads(b)["id"].encode() for b in (fast_bytes, slow_bytes)]
    assert fast_bytes.replace(ids[0], b"ID") == slow_bytes.replace(ids[1], b"ID")
    assert fast_bytes.endswith(b"}\n") and b", " not in fast_bytes


def test_its_predictions_are_recorded_and_take_feedback(storage_dir):
    fast, _ = make_pair(storage_dir, LOG_REQUESTS="off")
    never_the_view(fast)
    client = fast.test_client()
    found = client.post("/api/predict", json={"imageBase64": data_url(PAGE_DRAWING)}).get_json()
    assert predictions.flush(10)
    storage = fast.extensions["storage"]
    key = predictions.key_of(found["id"])
    record = predictions.find_record(storage.get(key).data, found["id"])
    assert record["cnn"]["probabilities"] == found["cnn"]["probabilities"]
    assert base64.b64decode(record["image"]) == PAGE_DRAWING
    feedback = client.post(
        "/api/feedback", json={"id": found["id"], "digit": found["cnn"]["digit"], "consent": True}
    )
    assert feedback.status_code == 202


def wrong_size_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 200), "white").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "request_",
    [
        {"json": {}},
        {"json": [1]},
        {"json": {"imageBase64": 7}},
        {"json": {"imageBase64": "data:image/png;base64,!!!"}},
        {"json": {"imageBase64": "data:image/png;base64," + base64.b64encode(b"GIF").decode()}},
        {"json": {"imageBase64": data_url(wrong_size_png())}},
        {"data": b'{"imageBase64": "data:image/png', "content_type": "application/json"},
        {"data": b"\xff\xfe\x00", "content_type": "application/json"},
        {"data": "[" * 5000 + "]" * 5000, "content_type": "application/json"},  # too deep
        {"data": '{"n": 1' + "0" * 5000 + "}", "content_type": "application/json"},  # int() refuses
        {"data": "x", "content_type": "text/plain"},
        {"data": "x" * (1024 * 1024 + 1), "content_type": "application/json"},
        {"data": {"imageBase64": data_url(PAGE_DRAWING)}},  # a form: Flask's
    ],
)
def test_anything_else_is_answered_by_flask_alone(storage_dir, request_):
    fast, slow = make_pair(storage_dir)
    got = answer(fast, **request_)
    assert got == answer(slow, **request_)
    assert got[0] == 200 or got[2]["error"]
    assert log_lines(fast) == log_lines(slow)


def test_missing_models_get_flasks_503(tmp_path):
    fast, slow = make_pair(tmp_path / "s", MODELS_DIR=str(tmp_path / "none"))
    got = answer(fast, json={"imageBase64": data_url(PAGE_DRAWING)})
    assert got[0] == 503 and "models are unavailable" in got[2]["error"]
    assert got == answer(slow, json={"imageBase64": data_url(PAGE_DRAWING)})


def test_a_failure_inside_is_flasks_500(storage_dir, monkeypatch):
    fast, _ = make_pair(storage_dir, TESTING=False)

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(predict, "recognise", broken)
    status, _, body = answer(fast, json={"imageBase64": data_url(PAGE_DRAWING)})
    assert status == 500 and body["error"]
    assert log_lines(fast)[-1]["status"] == 500


@pytest.mark.parametrize("sent_origin", [True, False])
def test_with_cors_on_every_prediction_gets_flask_cors(storage_dir, sent_origin):
    origin = "https://other.example"
    fast, slow = make_pair(storage_dir, CORS_ORIGINS=origin)
    headers = {"Origin": origin} if sent_origin else {}
    request_ = {"json": {"imageBase64": data_url(PAGE_DRAWING)}, "headers": headers}
    status, got_headers, body = answer(fast, **request_)
    assert status == 200 and got_headers["Access-Control-Allow-Origin"] == origin
    assert (status, got_headers, body) == answer(slow, **request_)


def test_behind_the_router_it_sees_the_forwarded_client_and_https(storage_dir):
    fast, slow = make_pair(storage_dir, TRUSTED_PROXY_HOPS=1)
    never_the_view(fast)
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    request_ = {"json": {"imageBase64": data_url(PAGE_DRAWING)}, "headers": forwarded}
    status, headers, body = answer(fast, **request_)
    assert status == 200 and headers["Strict-Transport-Security"].startswith("max-age=")
    assert (status, headers, body) == answer(slow, **request_)
    assert log_lines(fast) == log_lines(slow)
    assert log_lines(fast)[0]["client"] == "203.0.113.9"


def test_it_can_be_turned_off(storage_dir):
    _, slow = make_pair(storage_dir)
    calls = []
    view = slow.view_functions["api.predict"]
    slow.view_functions["api.predict"] = lambda: calls.append(1) or view()
    status, _, _ = answer(slow, json={"imageBase64": data_url(PAGE_DRAWING)})
    assert status == 200 and calls == [1]
