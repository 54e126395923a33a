"""Fuzz the write endpoints with malformed requests: never a 5xx, never anything stored.

Each endpoint gets 1,000 Hypothesis examples (derandomized, so every run sends the same
requests): raw bytes under every content type, JSON that is not an object, objects with
the right field names holding the wrong things, and drawings that are almost right (a PNG
of the wrong size, truncated, not base64, a valid drawing with a bad label, ...).
"""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from digits import feedback, predictions
from tests.fuzzing import CONTENT_TYPES, EXAMPLES, FUZZ, json_values, make_fuzz_app
from tests.helpers import (
    add_done_export,
    data_url,
    documented_schema,
    drawing_png,
    free_port,
    new_app,
    stored_files,
)


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white").save(buffer, "PNG")
    return buffer.getvalue()


GOOD_PNG = drawing_png()
GOOD_URL = data_url(GOOD_PNG)
# Pillow decodes a PNG whose last bytes (the IEND trailer, the last CRC) are cut off, and that
# is harmless: the pixels are all there. Truncations cut at least this much, into the pixels.
TAIL = 40
# Built once: making PNGs inside every example would make the fuzz slow.
WRONG_PNGS = [png((199, 200)), png((200, 201)), png((1, 1)), png((28, 28)), png((400, 400), "L")]


@st.composite
def bad_images(draw) -> object:
    """An imageBase64 value that is never a valid 200×200 PNG data URL."""
    choice = draw(st.integers(0, 7))
    prefix = "data:image/png;base64,"
    if choice == 0:
        return draw(json_values)
    if choice == 1:
        return draw(st.text(max_size=200))
    if choice == 2:  # right prefix, not base64
        return prefix + draw(st.text(max_size=100))
    if choice == 3:  # base64 of random bytes, sometimes behind a PNG signature
        head = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]))
        return prefix + base64.b64encode(head + draw(st.binary(max_size=300))).decode()
    if choice == 4:  # a real PNG of the wrong size
        return data_url(draw(st.sampled_from(WRONG_PNGS)))
    if choice == 5:  # the right PNG cut short, or with a flipped byte in its CRC-checked header
        if draw(st.booleans()):
            return data_url(GOOD_PNG[: draw(st.integers(1, len(GOOD_PNG) - TAIL))])
        broken = bytearray(GOOD_PNG)
        broken[draw(st.integers(8, 32))] ^= draw(st.integers(1, 255))
        return data_url(bytes(broken))
    if choice == 6:  # another image type behind the PNG prefix, or the wrong prefix
        return draw(st.sampled_from(["data:image/jpeg;base64,", "data:,", ""])) + GOOD_URL[22:]
    return GOOD_URL[: draw(st.integers(0, len(GOOD_URL) - TAIL * 4 // 3))]  # truncated data URL


bad_digits = json_values.filter(
    lambda v: (
        not (
            (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9)
            or (isinstance(v, str) and len(v) == 1 and v in "0123456789")
        )
    )
)
# Unknown fields, never named like a real one (that could make a request valid by accident).
extra_fields = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in ("imageBase64", "digit", "id", "consent")),
    json_values,
    max_size=2,
)
any_digit = st.one_of(bad_digits, st.integers(0, 9), st.sampled_from(list("0123456789")))


def encode(fields: dict, as_json: bool) -> tuple[bytes, str]:
    if as_json:
        return json.dumps(fields).encode(), "application/json"
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return urlencode(form).encode(), "application/x-www-form-urlencoded"


@st.composite
def raw_bodies(draw) -> tuple[bytes, str]:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # over the 1 MB limit
        return b"{" + b" " * (1024 * 1024 + 1) + b"}", "application/json"
    if kind <= 4:  # bytes under any content type
        return draw(st.binary(max_size=500)), draw(st.sampled_from(CONTENT_TYPES))
    if kind <= 6:  # JSON that is not an object
        return json.dumps(draw(json_values)).encode(), "application/json"
    text = draw(st.text(max_size=200))  # text that is almost JSON or almost a form
    return text.encode("utf-8", "surrogatepass"), draw(st.sampled_from(CONTENT_TYPES))


@st.composite
def hook_requests(draw) -> tuple[bytes, str]:
    """A save that must be refused: a bad image, or a good image with a bad label."""
    if draw(st.integers(0, 3)) == 0:
        return draw(raw_bodies())
    if draw(st.booleans()):
        fields = {"imageBase64": draw(bad_images()), "digit": draw(any_digit)}
    else:
        fields = {"imageBase64": GOOD_URL, "digit": draw(bad_digits)}
    for name in draw(st.sets(st.sampled_from(["imageBase64", "digit"]), max_size=1)):
        del fields[name]
    fields.update(draw(extra_fields))
    return encode(fields, as_json=draw(st.booleans()))


@st.composite
def predict_requests(draw) -> tuple[bytes, str]:
    if draw(st.integers(0, 3)) == 0:
        return draw(raw_bodies())
    fields = {"imageBase64": draw(bad_images())}
    if draw(st.booleans()):
        del fields["imageBase64"]
    fields.update(draw(extra_fields))
    return encode(fields, as_json=draw(st.booleans()))


@st.composite
def feedback_requests(draw) -> tuple[bytes, str]:
    """No prediction exists in this storage, so no feedback may ever be accepted."""
    if draw(st.integers(0, 3)) == 0:
        return draw(raw_bodies())
    ids = st.one_of(
        json_values,
        st.text(max_size=60),
        st.sampled_from(["../../etc/passwd", "a/b", "..", "", " ", "x" * 300, "%2e%2e"]),
        st.uuids().map(lambda u: u.hex),
    )
    fields = {
        "id": draw(ids),
        "digit": draw(st.one_of(any_digit, st.none())),
        "consent": draw(st.one_of(st.booleans(), json_values)),
    }
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        del fields[name]
    fields.update(draw(extra_fields))
    return encode(fields, as_json=draw(st.integers(0, 4)) > 0)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    storage_dir = tmp_path_factory.mktemp("fuzz") / "storage"
    return make_fuzz_app(storage_dir), storage_dir


def stored(storage_dir: Path) -> list[str]:
    if not storage_dir.exists():
        return []
    return [
        str(p.relative_to(storage_dir))
        for p in storage_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    ]


def fuzz(app, storage_dir: Path, path: str, strategy) -> None:
    client = app.test_client()
    if client.post(path, data=b"", content_type="text/plain").status_code == 404:
        pytest.skip(f"POST {path} does not exist yet")
    sent: list[int] = []

    @FUZZ
    @given(strategy)
    def one(request: tuple[bytes, str]) -> None:
        body, content_type = request
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(path, data=body, headers=headers)
        sent.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.get_data()[:200])
        assert response.status_code >= 400, response.get_data()[:200]
        assert response.is_json and isinstance(response.json.get("error"), str)

    one()
    assert len(sent) >= EXAMPLES
    assert stored(storage_dir) == [], stored(storage_dir)[:5]


@pytest.mark.slow
def test_fuzz_hook(fuzz_app):
    fuzz(*fuzz_app, "/hook", hook_requests())


@pytest.mark.slow
def test_fuzz_predict(fuzz_app):
    fuzz(*fuzz_app, "/api/predict", predict_requests())


@pytest.mark.slow
def test_fuzz_feedback(fuzz_app, monkeypatch):
    # An unknown recent id is looked up again for ~0.6 s (another worker may still be writing
    # the prediction); that wait is not what is fuzzed here, and 1,000 would take minutes.
    monkeypatch.setattr(feedback, "RETRY_DELAYS", ())
    fuzz(*fuzz_app, "/api/feedback", feedback_requests())


def test_good_requests_still_work(fuzz_app, tmp_path):
    """The fuzzers' notion of 'valid' matches the app's: the good drawing is accepted."""
    app = new_app(tmp_path / "s")
    response = app.test_client().post("/hook", json={"imageBase64": GOOD_URL, "digit": 7})
    assert response.status_code == 201


def test_openapi_document_matches_the_routes(client):
    document = client.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/hook", "/healthz"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served <= documented, f"undocumented: {sorted(served - documented)}"
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert parameter["schema"].get("type"), (path, parameter)
    for needed in ("/hook", "/api/predict", "/api/feedback", "/api/stats", "/healthz"):
        assert needed in document["paths"]
    # Only these never touch storage while answering (predictions are saved in the background;
    # the gallery and the counts read the database alone).
    storage_free = {"/healthz", "/api/openapi.json", "/api/predict"}
    storage_free |= {"/api/dataset", "/api/dataset/counts"}
    storage_free |= {"/api/dataset/exports/{job_id}"}  # a job's row (S3's links are signed here)
    assert {path for path, *_ in STORAGE_USERS} == set(document["paths"]) - storage_free


ANSWERS = [
    ("/api/predict", "post", {"json": {"imageBase64": GOOD_URL}}),
    ("/api/predict", "post", {"json": {"imageBase64": data_url(drawing_png(lines=()))}}),
    ("/api/predict", "post", {"json": {"imageBase64": "data:image/png;base64,AAAA"}}),
    ("/hook", "post", {"json": {"imageBase64": GOOD_URL, "digit": 7}}),
    ("/hook", "post", {"data": "x", "content_type": "text/plain"}),
    ("/api/dataset/counts", "get", {}),
    ("/healthz", "get", {}),
]


@pytest.mark.parametrize("path, method, request_", ANSWERS)
def test_answers_match_their_documented_schemas(client, path, method, request_):
    document = client.get("/api/openapi.json").json
    response = client.open(path, method=method.upper(), **request_)
    schema = documented_schema(document, path, method, response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.json)


OLD_ID = predictions.new_id(datetime(2020, 1, 1, tzinfo=UTC))  # looked up once, no retries
# Every endpoint that reads or writes storage, as (documented path, method, URL, request).
ADMIN = {"headers": {"Authorization": "Bearer s3cret"}}
EXPORT_ID = "x20261207T000000-0123abcd"
STORAGE_USERS = [
    ("/api/stats", "get", "/api/stats", {}),
    ("/api/dataset/image/{name}", "get", "/api/dataset/image/7_x", {}),
    ("/api/dataset/export", "get", "/api/dataset/export", ADMIN),
    ("/api/dataset/exports", "post", "/api/dataset/exports", ADMIN),
    (
        "/api/dataset/exports/{job_id}/download",
        "get",
        f"/api/dataset/exports/{EXPORT_ID}/download",  # a done job: storage_failure_setup
        ADMIN,
    ),
    ("/api/dataset/{name}", "delete", "/api/dataset/7_x", ADMIN),
    ("/api/models", "get", "/api/models", {}),
    (
        "/api/models/rollback",
        "post",
        "/api/models/rollback",
        {"json": {"net": "cnn", "version": "original"}, **ADMIN},
    ),
    (
        "/api/models/pin",
        "post",
        "/api/models/pin",
        {"json": {"net": "cnn", "version": "20260101T000000Z-abcdef", "pinned": True}, **ADMIN},
    ),
    ("/hook", "post", "/hook", {"json": {"imageBase64": GOOD_URL, "digit": 7}}),
    (
        "/api/feedback",
        "post",
        "/api/feedback",
        {"json": {"id": OLD_ID, "digit": 1, "consent": True}},
    ),
]


@pytest.mark.parametrize("path, method, url, request_", STORAGE_USERS)
def test_storage_failures_match_their_documented_schemas(tmp_path, path, method, url, request_):
    """Storage that fails (here the storage folder is a file) gets the documented 503."""
    (tmp_path / "storage").write_text("not a folder")
    app = make_fuzz_app(tmp_path / "storage", ADMIN_TOKEN="s3cret")
    if path.endswith("/download"):
        add_done_export(app, EXPORT_ID)  # the download of a done export reads storage
    client = app.test_client()
    document = client.get("/api/openapi.json").json
    response = client.open(url, method=method.upper(), **request_)
    assert response.status_code == 503, response.data
    schema = documented_schema(document, path, method, 503)
    jsonschema.Draft202012Validator(schema).validate(response.json)


# Every endpoint that reads or writes the records database (the gallery and the counts read
# nothing else).
DATABASE_USERS = [
    ("/api/stats", "get", "/api/stats", {}),
    ("/api/dataset", "get", "/api/dataset", {}),
    ("/api/dataset/counts", "get", "/api/dataset/counts", {}),
    ("/api/dataset/{name}", "delete", "/api/dataset/7_x", ADMIN),
    ("/hook", "post", "/hook", {"json": {"imageBase64": GOOD_URL, "digit": 7}}),
    ("/api/dataset/export", "get", "/api/dataset/export", ADMIN),
    ("/api/dataset/exports", "post", "/api/dataset/exports", ADMIN),
    ("/api/dataset/exports/{job_id}", "get", f"/api/dataset/exports/{EXPORT_ID}", ADMIN),
    (
        "/api/dataset/exports/{job_id}/download",
        "get",
        f"/api/dataset/exports/{EXPORT_ID}/download",
        ADMIN,
    ),
]


@pytest.mark.parametrize("path, method, url, request_", DATABASE_USERS)
def test_database_failures_match_their_documented_schemas(tmp_path, path, method, url, request_):
    """A database that does not answer (nothing listens on its port) gets the documented 503,
    and nothing is saved."""
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/digits"
    app = make_fuzz_app(tmp_path / "storage", ADMIN_TOKEN="s3cret", DATABASE_URL=dead)
    client = app.test_client()
    document = client.get("/api/openapi.json").json
    response = client.open(url, method=method.upper(), **request_)
    assert response.status_code == 503, response.data
    schema = documented_schema(document, path, method, 503)
    jsonschema.Draft202012Validator(schema).validate(response.json)
    # A save's blobs are written before its index row, and withdrawn when the row fails.
    assert [f for f in stored_files(tmp_path / "storage") if f.startswith("drawings/")] == []


def test_predictions_by_nets_that_learned_match_the_schema(client, monkeypatch):
    recognizer = client.application.extensions["models"].recognizer()
    # As if the nets had learned: the shipped ones answer beside them.
    monkeypatch.setattr(recognizer, "predict_original", lambda x28: recognizer.predict(x28))
    document = client.get("/api/openapi.json").json
    body = client.post("/api/predict", json={"imageBase64": GOOD_URL}).json
    assert set(body["original"]) == {"fnn", "cnn"}
    schema = documented_schema(document, "/api/predict", "post", 200)
    jsonschema.Draft202012Validator(schema).validate(body)
