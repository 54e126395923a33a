"""POST /hook: the original site's contract for saving a labelled drawing."""

from __future__ import annotations

import base64
import http.client
import io
import json
import zlib
from urllib.parse import urlencode

import pytest
from PIL import Image

from tests.helpers import (
    ROOT,
    data_url,
    drawing_png,
    free_port,
    start_gunicorn,
    stored_files,
    wait_for_port,
)

FORM = "application/x-www-form-urlencoded"


def test_form_post_saves_drawing_and_metadata(client, storage_dir, drawing_url):
    response = client.post("/hook", data={"imageBase64": drawing_url, "digit": "7"})
    assert response.status_code == 201
    name = response.json["name"]
    assert response.json["saved"] is True
    assert name.startswith("7_")
    png = storage_dir / "drawings" / "7" / f"{name}.png"
    meta = json.loads((storage_dir / "drawings" / "7" / f"{name}.json").read_text())
    assert png.read_bytes() == drawing_png()
    assert meta["label"] == "7" and meta["source"] == "collect"
    assert meta["size"] == [200, 200] and meta["bytes"] == len(drawing_png())
    assert meta["created"] and meta["app_version"]


def test_json_post_saves_drawing(client, storage_dir, drawing_url):
    response = client.post("/hook", json={"imageBase64": drawing_url, "digit": 0})
    assert response.status_code == 201
    assert response.json["name"].startswith("0_")
    assert len(stored_files(storage_dir)) == 2


def test_names_are_unique(client, drawing_url):
    names = {
        client.post("/hook", data={"imageBase64": drawing_url, "digit": "1"}).json["name"]
        for _ in range(5)
    }
    assert len(names) == 5


def png_of(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(buffer, "JPEG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A valid PNG header claiming 20000×20000 pixels, with a tiny compressed body."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 20001 * 50)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


BAD_FIELDS = [
    ({"digit": "3"}, "imageBase64 is missing"),
    ({"imageBase64": "DRAWING"}, "digit is missing"),
    ({"imageBase64": "DRAWING", "digit": "10"}, "digit must be"),
    ({"imageBase64": "DRAWING", "digit": "-1"}, "digit must be"),
    ({"imageBase64": "DRAWING", "digit": "a"}, "digit must be"),
    ({"imageBase64": "hello", "digit": "3"}, "data:image/png;base64"),
    ({"imageBase64": "data:image/png;base64,@@@not base64", "digit": "3"}, "not valid base64"),
    ({"imageBase64": data_url(b"just some bytes"), "digit": "3"}, "not a PNG"),
    (
        {"imageBase64": "data:image/png;base64," + base64.b64encode(jpeg()).decode(), "digit": "3"},
        "not a PNG",
    ),
    ({"imageBase64": data_url(png_of((28, 28))), "digit": "3"}, "200×200"),
    ({"imageBase64": data_url(png_of((200, 201))), "digit": "3"}, "200×200"),
    ({"imageBase64": data_url(bomb_png()), "digit": "3"}, "200×200"),
    ({"imageBase64": data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50), "digit": "3"}, "PNG"),
]


@pytest.mark.parametrize("fields, message", BAD_FIELDS)
def test_bad_input_gets_400_and_stores_nothing(client, storage_dir, drawing_url, fields, message):
    fields = {k: (drawing_url if v == "DRAWING" else v) for k, v in fields.items()}
    for response in (client.post("/hook", data=fields), client.post("/hook", json=fields)):
        assert response.status_code == 400
        assert message in response.json["error"]
    assert stored_files(storage_dir) == []


def test_truncated_png_is_refused(client, storage_dir):
    png = drawing_png()
    response = client.post(
        "/hook", data={"imageBase64": data_url(png[: len(png) // 2]), "digit": "3"}
    )
    assert response.status_code == 400
    assert stored_files(storage_dir) == []


def test_json_that_is_not_an_object_gets_400(client, storage_dir):
    for body in ("[1, 2]", '"text"', "7", "null"):
        response = client.post("/hook", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.json["error"] == "the body is not a JSON object"
    assert stored_files(storage_dir) == []


UNREADABLE_JSON = [
    "not json",
    '{"digit": 7',
    b'{"digit": "\xff"}',  # not UTF-8
    '{"digit": 1' + "0" * 5000 + "}",  # Python's json refuses ints of over 4,300 digits
    # 40 kB, past the JSON parser's recursion limit on Python 3.11 and on 3.13 (Heroku's),
    # which parses 5,000 levels
    "[" * 20000 + "]" * 20000,
]


@pytest.mark.parametrize("path", ["/hook", "/api/predict", "/api/feedback"])
@pytest.mark.parametrize("body", UNREADABLE_JSON)
def test_json_that_does_not_parse_gets_400_that_says_so(client, storage_dir, path, body):
    """The predict fast path hands these to Flask, which words them as /hook does."""
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "the body is not valid JSON"
    assert stored_files(storage_dir) == []


def test_body_over_one_megabyte_gets_413(client, storage_dir):
    big = "data:image/png;base64," + "A" * (1024 * 1024 + 10)
    for response in (
        client.post("/hook", data={"imageBase64": big, "digit": "3"}),
        client.post("/hook", json={"imageBase64": big, "digit": "3"}),
    ):
        assert response.status_code == 413
        assert "larger than" in response.json["error"]
    assert stored_files(storage_dir) == []


def chunked_post(client, path: str, body: bytes, content_type: str):
    """A POST as gunicorn hands over a chunked one: no Content-Length, the stream terminated."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_over_one_megabyte_gets_413_not_a_cut_save(client, storage_dir, drawing_url):
    # The drawing and label come first, so a body cut at the limit would still save.
    fields = {"digit": "3", "imageBase64": drawing_url, "pad": "A" * (1024 * 1024)}
    form = urlencode(fields).encode()
    for body, kind in ((form, FORM), (json.dumps(fields).encode(), "application/json")):
        response = chunked_post(client, "/hook", body, kind)
        assert response.status_code == 413
        assert "larger than" in response.json["error"]
    assert stored_files(storage_dir) == []


def test_chunked_body_within_the_limit_is_saved(client, storage_dir, drawing_url):
    form = urlencode({"digit": "3", "imageBase64": drawing_url}).encode()
    assert chunked_post(client, "/hook", form, FORM).status_code == 201
    body = json.dumps({"digit": "4", "imageBase64": drawing_url}).encode()
    assert chunked_post(client, "/hook", body, "application/json").status_code == 201
    assert len([f for f in stored_files(storage_dir) if f.endswith(".png")]) == 2


def post_chunked(port: int, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    connection.request("POST", "/hook", body=pieces, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_chunked_bodies_under_gunicorn(tmp_path, drawing_url):
    """gunicorn, not the test client, reads the chunks here."""
    port = free_port()
    server = start_gunicorn(port, tmp_path / "s", ROOT / "models")
    try:
        wait_for_port(port)
        fields = {"digit": "3", "imageBase64": drawing_url}
        status, answer = post_chunked(port, json.dumps({**fields, "pad": "A" * 2**20}).encode())
        assert (status, answer["error"]) == (413, "the request body is larger than 1024 KB")
        assert stored_files(tmp_path / "s") == []
        assert post_chunked(port, json.dumps(fields).encode())[0] == 201
    finally:
        server.terminate()
        server.wait(20)


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/xml", None])
def test_unsupported_content_type_gets_415(client, storage_dir, content_type):
    response = client.post("/hook", data=b"imageBase64=x&digit=3", content_type=content_type)
    assert response.status_code == 415
    assert "JSON" in response.json["error"]
    assert stored_files(storage_dir) == []


def test_get_is_not_allowed_and_answers_json(client):
    response = client.get("/hook")
    assert response.status_code == 405
    assert "error" in response.json
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("PUT", "/api/predict", 405),
        ("POST", "/api/stats", 405),
        ("POST", "/api/nothing", 404),
        ("POST", "/nothing", 404),
        ("GET", "/api", 404),
    ],
)
def test_a_wrong_route_or_method_is_named_before_the_body(client, method, path, status):
    response = client.open(path, method=method, data="x", content_type="text/plain")
    assert response.status_code == status  # not 415 for the body's type
    assert response.is_json == (path != "/nothing")  # the API answers JSON, pages HTML


def test_transparent_canvas_is_accepted(client, storage_dir):
    url = data_url(drawing_png(mode="RGBA"))
    assert client.post("/hook", data={"imageBase64": url, "digit": "4"}).status_code == 201


def test_failed_metadata_write_leaves_nothing(app, client, storage_dir, drawing_url, monkeypatch):
    storage = app.extensions["storage"]
    real_put = storage.put

    def failing_put(key, data, **kw):
        if key.endswith(".json"):
            from digits.storage import StorageUnavailable

            raise StorageUnavailable("disk on fire")
        return real_put(key, data, **kw)

    monkeypatch.setattr(storage, "put", failing_put)
    response = client.post("/hook", data={"imageBase64": drawing_url, "digit": "5"})
    assert response.status_code == 503
    assert "nothing was saved" in response.json["error"]
    assert stored_files(storage_dir) == []
    assert client.get("/api/dataset/counts").json["total"] == 0


@pytest.mark.s3
def test_hook_saves_to_s3(s3_app, s3_server, s3_url, drawing_url):
    response = s3_app.test_client().post("/hook", data={"imageBase64": drawing_url, "digit": "2"})
    assert response.status_code == 201
    import boto3

    bucket, prefix = s3_url[len("s3://") :].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint)
    name = response.json["name"]
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/drawings/2/{name}.png")["Body"].read()
    assert body == drawing_png()
    meta = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/drawings/2/{name}.json")["Body"].read()
    )
    assert meta["label"] == "2"


@pytest.mark.s3
def test_a_save_whose_replies_were_lost_is_saved_whole(s3_app, drawing_url):
    """botocore sends a put again when its reply is lost; the first one had landed."""
    sent = set()

    def lose_each_first_reply(request_dict, caught_exception, **_):
        if caught_exception is None and request_dict["url"] not in sent:
            sent.add(request_dict["url"])
            return 0  # retry at once, as after a read timeout

    events = s3_app.extensions["storage"].client.meta.events
    events.register_first("needs-retry.s3.PutObject", lose_each_first_reply)
    client = s3_app.test_client()
    response = client.post("/hook", data={"imageBase64": drawing_url, "digit": "2"})
    assert response.status_code == 201
    assert len(sent) == 2  # the drawing and its metadata were each sent twice
    [item] = client.get("/api/dataset").json["items"]
    assert client.get(item["url"]).data == drawing_png()
    assert client.get("/api/dataset/counts").json["total"] == 1


def test_a_failing_disk_gives_503_and_no_false_ok(drawing_url, tmp_path, make_app):
    (tmp_path / "file").write_text("not a folder")
    app = make_app(STORAGE_URL=str(tmp_path / "file" / "storage"))
    client = app.test_client()
    response = client.post("/hook", data={"imageBase64": drawing_url, "digit": "2"})
    assert response.status_code == 503
    assert "nothing was saved" in response.json["error"]
    assert client.get("/healthz").json["storage"] == "unavailable"
    # The counts and the gallery come from the database, which holds the truth: nothing saved.
    assert client.get("/api/dataset/counts").json["total"] == 0
    assert client.get("/api/dataset").json["total"] == 0
    assert client.get("/api/stats").status_code == 503  # the model pointer is in storage
    # One key read: not "no such drawing" or "no such prediction" (404) either.
    image = client.get("/api/dataset/image/3_20260101T000000000000_0123456789ab")
    assert image.status_code == 503 and "unavailable" in image.json["error"]
    answer = {"id": "p20260101T000000000000-0123abcd-89abcdef", "digit": 3, "consent": False}
    response = client.post("/api/feedback", json=answer)
    assert response.status_code == 503 and "nothing was saved" in response.json["error"]


def test_s3_down_gives_503_and_no_false_ok(drawing_url, make_app):
    app = make_app(STORAGE_URL="s3://bucket/x", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    response = app.test_client().post("/hook", data={"imageBase64": drawing_url, "digit": "2"})
    assert response.status_code == 503
    assert "saved" not in response.json
