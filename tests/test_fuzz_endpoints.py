"""Fuzz every endpoint that test_fuzz.py does not: never a 5xx, and storage left as it was.

test_fuzz.py sends 1,000 malformed bodies to each endpoint that stores something (/hook,
/api/predict, /api/feedback). This file sends 1,000 malformed requests to each of the others:
bad query strings, names and tokens, wrong methods, junk bodies and headers. The app under test
has an admin token, one saved drawing and a model pointer, so a request that slipped past a check
could delete, move or leak something real; afterwards every stored file must be byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digits import dataset, registry
from tests.fuzzing import CONTENT_TYPES, EXAMPLES, FUZZ, json_values, make_fuzz_app
from tests.helpers import drawing_png

TOKEN = "fuzz-admin-token"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
# Names and versions that are never a real one, but look like it, or like an attack.
ODD_NAMES = ["..", "../current.json", "%2e%2e", "a/b", "x" * 300, "7", "none", " ", "\x00", "é"]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """An app with something to lose: a drawing, a model pointer, an admin token."""
    storage_dir = tmp_path_factory.mktemp("fuzz-endpoints") / "storage"
    app = make_fuzz_app(storage_dir, ADMIN_TOKEN=TOKEN)
    storage = app.extensions["storage"]
    name = dataset.save_drawing(storage, drawing_png(), "7", "collect")
    registry.move_pointer(storage, "cnn", registry.ORIGINAL, by="fuzz")
    return app, storage_dir, name


def snapshot(storage_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(storage_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(storage_dir.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


junk_text = st.text(max_size=40)
junk_query = st.dictionaries(st.text(max_size=8), junk_text, max_size=3)
bad_tokens = st.one_of(
    st.none(),
    st.sampled_from(["", "Bearer", "Bearer ", "Basic " + TOKEN, TOKEN, "bearer  x"]),
    junk_text.map(lambda t: "Bearer " + t).filter(lambda h: h.strip() != f"Bearer {TOKEN}"),
)


def latin1(text: str) -> str:
    """Header values travel as latin-1: what a client could actually send."""
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")


@st.composite
def junk_requests(draw, path_strategy) -> dict:
    """A request to one of the paths with junk around it: method, query, body, headers."""
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = {"Content-Type": content_type} if content_type else {}
    token = draw(bad_tokens)
    if token is not None:
        headers["Authorization"] = latin1(token)
    for header in draw(st.sets(st.sampled_from(["If-None-Match", "Range", "Accept"]))):
        headers[header] = latin1(draw(junk_text))
    return {
        "method": draw(st.sampled_from(METHODS)),
        "path": draw(path_strategy),
        "query_string": urlencode(draw(junk_query)),
        "data": draw(st.binary(max_size=200)),
        "headers": headers,
    }


def run_fuzz(fuzz_target, strategy, check) -> None:
    """Send EXAMPLES requests; `check(request, response)` asserts what each must get."""
    app, storage_dir, _ = fuzz_target
    client = app.test_client()
    before = snapshot(storage_dir)
    sent: list[int] = []

    @FUZZ
    @given(strategy)
    def one(request: dict) -> None:
        response = client.open(**request)
        sent.append(response.status_code)
        assert response.status_code < 500, (request, response.get_data()[:200])
        check(request, response)

    one()
    assert len(sent) >= EXAMPLES
    assert snapshot(storage_dir) == before


def refused_as_json(request: dict, response) -> None:
    """Never a success; an error says why in JSON. (A name holding "/" can get werkzeug's 308 to
    the path with the slashes merged: a redirect, which deletes nothing.)"""
    assert not 200 <= response.status_code < 300, (request, response.status_code)
    if response.status_code >= 400:
        assert response.is_json and isinstance(response.json.get("error"), str), response.data


def whole(text: str, most: int) -> bool:
    """What main.count_arg accepts: a whole number from 1 to `most`, of at most 18 digits."""
    return text.isascii() and text.isdigit() and len(text) <= 18 and 1 <= int(text) <= most


# Past 18 digits no page can be that far; past 4,300 int() refuses them (it was a 500). Drawn
# text is rarely that long, so a drawn pattern is also repeated to a drawn length.
long_digits = st.one_of(
    st.text("0123456789", min_size=19, max_size=5000),
    st.builds(
        lambda pattern, length: (pattern * length)[:length],
        st.text("0123456789", min_size=1, max_size=8),
        st.integers(19, 5000),
    ),
)


@st.composite
def bad_gallery_queries(draw) -> dict:
    """GET /api/dataset with at least one of label, page and per_page out of range."""
    bad = {
        "label": junk_text.filter(lambda t: t not in dataset.LABELS and t != ""),
        "page": st.one_of(junk_text, st.integers(-5, 0).map(str), long_digits).filter(
            lambda t: not whole(t, 10**18)  # every page from 1 is served, up to 18 digits
        ),
        "per_page": st.one_of(junk_text, st.integers(201, 10**9).map(str), long_digits).filter(
            lambda t: not whole(t, 200)
        ),
    }
    good = {"label": "7", "page": "1", "per_page": "48"}
    spoilt = draw(st.sets(st.sampled_from(sorted(bad)), min_size=1))
    query = {k: draw(bad[k]) for k in spoilt}
    query.update({k: v for k, v in good.items() if k not in spoilt and draw(st.booleans())})
    return {"method": "GET", "path": "/api/dataset", "query_string": urlencode(query)}


@pytest.mark.slow
def test_fuzz_gallery_queries(fuzz_target):
    run_fuzz(fuzz_target, bad_gallery_queries(), refused_as_json)


names = st.one_of(st.sampled_from(ODD_NAMES), junk_text, st.uuids().map(str))


@pytest.mark.slow
def test_fuzz_image_names(fuzz_target):
    _, _, real = fuzz_target
    paths = names.filter(lambda n: n != real).map(
        lambda n: "/api/dataset/image/" + quote(n, safe="")
    )

    def not_found(request: dict, response) -> None:
        if request["method"] in ("GET", "HEAD"):
            assert response.status_code in (404, 405), (request, response.status_code)

    run_fuzz(fuzz_target, junk_requests(paths), not_found)


@pytest.mark.slow
def test_fuzz_delete(fuzz_target):
    """Bad tokens and unknown names: nothing is deleted (the snapshot), never a 2xx."""
    _, _, real = fuzz_target
    unknown = names.filter(lambda n: n != real).map(lambda n: "/api/dataset/" + quote(n, safe=""))
    # With the right token but an unknown name, or with a bad token and the real name.
    with_token = unknown.map(lambda p: (p, f"Bearer {TOKEN}"))
    without = st.tuples(st.just("/api/dataset/" + real), bad_tokens)

    @st.composite
    def deletes(draw) -> dict:
        path, token = draw(st.one_of(with_token, without))
        headers = {} if token is None else {"Authorization": latin1(token)}
        return {
            "method": "DELETE",
            "path": path,
            "headers": headers,
            "data": draw(st.binary(max_size=50)),
        }

    run_fuzz(fuzz_target, deletes(), refused_as_json)


def admin_post(draw, path: str, fields: dict) -> dict:
    """A POST of `fields` less one maybe, as JSON or junk bytes, with the token or a bad one."""
    for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=1)):
        del fields[key]
    body = json.dumps(fields).encode() if draw(st.booleans()) else draw(st.binary(max_size=100))
    token = draw(st.one_of(st.just(f"Bearer {TOKEN}"), bad_tokens))
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES)) or "application/json"}
    if token is not None:
        headers["Authorization"] = latin1(token)
    return {"method": "POST", "path": path, "data": body, "headers": headers}


@st.composite
def bad_rollbacks(draw) -> dict:
    """POST /api/models/rollback: a bad token, or the right one with a bad body."""
    fields = {
        "net": draw(st.one_of(json_values, st.sampled_from(["cnn", "fnn", "CNN", ""]))),
        "version": draw(st.one_of(json_values, st.sampled_from(ODD_NAMES))),
    }
    if fields["net"] in registry.NETS and fields["version"] == registry.ORIGINAL:
        fields["version"] = "p20260101T000000000000-deadbeef"  # never published here
    return admin_post(draw, "/api/models/rollback", fields)


@pytest.mark.slow
def test_fuzz_rollback(fuzz_target):
    run_fuzz(fuzz_target, bad_rollbacks(), refused_as_json)


@st.composite
def bad_pins(draw) -> dict:
    """POST /api/models/pin: a bad token, or the right one with a bad body (no version here is
    published, so no body may pin anything)."""
    fields = {
        "net": draw(st.one_of(json_values, st.sampled_from(["cnn", "fnn", "CNN", ""]))),
        "version": draw(
            st.one_of(
                json_values,
                st.sampled_from([*ODD_NAMES, registry.ORIGINAL, "20260101T000000Z-abcdef"]),
            )
        ),
        "pinned": draw(st.one_of(json_values, st.booleans())),
    }
    return admin_post(draw, "/api/models/pin", fields)


@pytest.mark.slow
def test_fuzz_pin(fuzz_target):
    run_fuzz(fuzz_target, bad_pins(), refused_as_json)


@pytest.mark.slow
def test_fuzz_export_tokens(fuzz_target):
    routes = [
        ("GET", "/api/dataset/export"),
        ("POST", "/api/dataset/exports"),
        ("GET", "/api/dataset/exports/x20261207T000000-0123abcd/download"),
    ]
    request = st.builds(
        lambda route, token: {
            "method": route[0],
            "path": route[1],
            "headers": {} if token is None else {"Authorization": latin1(token)},
        },
        st.sampled_from(routes),
        bad_tokens,
    )

    def refused(request: dict, response) -> None:
        assert response.status_code in (401, 403), (request, response.status_code)
        assert response.mimetype != "application/zip"

    run_fuzz(fuzz_target, request, refused)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", ["/api/dataset/counts", "/api/models", "/api/stats", "/healthz", "/api/openapi.json"]
)
def test_fuzz_read_only_endpoints(fuzz_target, path):
    """Endpoints that take no input: junk around them is ignored or refused, never a 5xx."""

    def answered(request: dict, response) -> None:
        if request["method"] in ("GET", "HEAD", "OPTIONS"):
            assert response.status_code == 200, (request, response.status_code)
        else:  # 405, or 401 for DELETE /api/dataset/counts: the route of a drawing named so
            assert 400 <= response.status_code < 500, (request, response.status_code)

    run_fuzz(fuzz_target, junk_requests(st.just(path)), answered)
