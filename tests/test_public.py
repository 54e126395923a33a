"""Public reads cannot starve predictions (digits/public.py): a bound on the threads they hold,
answers browsers may reuse, and a per-IP limit on the API's reads."""

from __future__ import annotations

import io
import json
import threading

import pytest

from digits import public, stats

WAIT = 30  # seconds a test waits for a thread to get somewhere: a hang, not a timing


class HeldReads:
    """GET /api/stats in threads, each held inside a stand-in view until `release`."""

    def __init__(self, app, count: int) -> None:
        self.started = threading.Semaphore(0)
        self.let_go = threading.Event()
        self.answers: list = []
        app.view_functions["api.learning_stats"] = self.view
        self.threads = [threading.Thread(target=self.ask, args=(app,)) for _ in range(count)]
        for thread in self.threads:
            thread.start()
        for _ in range(count):  # every one is inside the view, holding its slot
            assert self.started.acquire(timeout=WAIT)

    def view(self):
        self.started.release()
        assert self.let_go.wait(WAIT)
        return {"slow": True}

    def ask(self, app) -> None:
        self.answers.append(app.test_client().get("/api/stats").status_code)

    def release(self) -> list[int]:
        self.let_go.set()
        for thread in self.threads:
            thread.join(WAIT)
        return self.answers


def test_reads_past_the_bound_are_refused_at_once_and_others_still_answer(make_app):
    app = make_app(PUBLIC_READS="2")
    held = HeldReads(app, 2)
    client = app.test_client()
    refused = client.get("/api/dataset/counts")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["X-Frame-Options"] == "DENY"
    assert refused.json == {"error": public.BUSY}
    assert client.get("/healthz").status_code == 200  # not a public read: never bounded
    assert held.release() == [200, 200]
    assert client.get("/api/dataset/counts").status_code == 200  # the slots were given back


def test_a_refused_page_is_the_sites_error_page(make_app):
    app = make_app(PUBLIC_READS="1")
    held = HeldReads(app, 1)
    client = app.test_client()
    refused = client.get("/stats")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.mimetype == "text/html"
    assert b"Service Unavailable" in refused.data and b"</html>" in refused.data.lower()
    head = client.head("/dataset")
    assert head.status_code == 503 and head.data == b""
    assert held.release() == [200]
    assert client.get("/stats").status_code == 200


def cors_of(response) -> dict:
    """The CORS part of an answer: its Access-Control-* headers, and whether it varies by Origin."""
    found = {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}
    return found | {"varies by Origin": "Origin" in response.headers.get("Vary", "")}


def test_a_refusal_carries_the_cors_headers_of_the_answer_it_stands_for(make_app):
    """A script on an allowed site reads the 503 and when to ask again, not a network error."""
    app = make_app(PUBLIC_READS="1", CORS_ORIGINS="https://a.example, https://b.example")
    client = app.test_client()
    origins = ("https://b.example", "https://evil.example")
    answered = {o: cors_of(client.get("/api/stats", headers={"Origin": o})) for o in origins}
    held = HeldReads(app, 1)
    refused = {o: client.get("/api/stats", headers={"Origin": o}) for o in origins}
    page = client.get("/stats", headers={"Origin": origins[0]})  # pages are not CORS's
    assert held.release() == [200]
    assert {r.status_code for r in refused.values()} == {page.status_code} == {503}
    assert {o: cors_of(refused[o]) for o in origins} == answered
    allowed = refused[origins[0]].headers
    assert allowed["Access-Control-Allow-Origin"] == origins[0]
    assert "Retry-After" in allowed["Access-Control-Expose-Headers"]
    assert cors_of(refused[origins[1]]) == cors_of(page) == {"varies by Origin": False}


def test_predictions_are_not_bounded(make_app, drawing_url):
    app = make_app(PUBLIC_READS="1")
    held = HeldReads(app, 1)
    answer = app.test_client().post("/api/predict", json={"imageBase64": drawing_url})
    assert answer.status_code == 200
    assert held.release() == [200]


def test_a_refusal_is_logged(make_app):
    app = make_app(PUBLIC_READS="1", LOG_REQUESTS="on")
    app.extensions["request_log"].stream = io.StringIO()
    held = HeldReads(app, 1)
    refused = app.test_client().get("/api/stats")
    held.release()
    lines = [json.loads(t) for t in app.extensions["request_log"].stream.getvalue().splitlines()]
    mine = [line for line in lines if line["status"] == 503]
    assert len(mine) == 1 and mine[0]["path"] == "/api/stats"
    assert mine[0]["request_id"] == refused.headers["X-Request-ID"]


def test_no_bound_when_off(make_app):
    app = make_app(PUBLIC_READS="0")
    held = HeldReads(app, 3)
    assert app.test_client().get("/api/dataset/counts").status_code == 200
    assert held.release() == [200, 200, 200]


@pytest.mark.parametrize(
    ("method", "path", "bounded"),
    [
        ("GET", "/api/stats", True),
        ("GET", "/api/dataset", True),
        ("GET", "/api/dataset/counts", True),
        ("GET", "/api/dataset/image/3_x.png", True),
        ("HEAD", "/stats", True),
        ("GET", "/dataset", True),
        ("GET", "/models", True),
        ("GET", "/api/dataset/export", False),  # the admin's
        ("DELETE", "/api/dataset/3_x", False),
        ("POST", "/api/predict", False),
        ("GET", "/healthz", False),
        ("GET", "/", False),
    ],
)
def test_which_requests_are_public_reads(method, path, bounded):
    assert public.is_public_read({"REQUEST_METHOD": method, "PATH_INFO": path}) is bounded


# --- answers browsers may reuse ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reuse"),
    [
        ("/api/stats", "max-age=5"),  # computed at most that often anyway
        ("/stats", "max-age=5"),
        ("/dataset", "max-age=5"),
        ("/api/dataset/counts", "no-cache"),  # the collect page shows a save's count at once
        ("/api/dataset?page=1", "no-cache"),  # and the gallery an admin's delete
    ],
)
def test_reads_may_be_reused_and_asked_again_with_their_etag(client, path, reuse):
    stats.clear_cache()
    first = client.get(path)
    assert first.status_code == 200
    assert set(first.headers["Cache-Control"].split(", ")) == {"public", reuse}
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    stats.clear_cache()


def test_the_stats_answer_is_rendered_once_while_fresh(client, monkeypatch):
    stats.clear_cache()
    rendered = []
    original = public.rendered_json
    monkeypatch.setattr(public, "rendered_json", lambda a: rendered.append(1) or original(a))
    bodies = {client.get("/api/stats").data for _ in range(3)}
    assert len(bodies) == 1 and rendered == [1]
    assert json.loads(bodies.pop())["totals"]["feedback"] == 0
    stats.clear_cache()


# --- the per-IP limit on the API's reads -------------------------------------------------------


def test_the_apis_reads_share_one_limit_per_client(make_app):
    client = make_app(RATE_LIMIT_READS="3/minute").test_client()
    me = {"REMOTE_ADDR": "198.51.100.7"}
    codes = [
        client.get(path, environ_base=me).status_code
        for path in ("/api/stats", "/api/dataset", "/api/dataset/counts", "/api/stats")
    ]
    assert codes == [200, 200, 200, 429]
    other = client.get("/api/stats", environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other.status_code == 200


def test_the_read_limit_leaves_predictions_alone(make_app, drawing_url):
    app = make_app(RATE_LIMIT_READS="1/minute")
    client = app.test_client()
    assert [client.get("/api/stats").status_code for _ in range(2)] == [200, 429]
    assert ("POST", "/api/predict") not in app.extensions["rate_limiters"]  # the fast path's
    for _ in range(3):
        assert client.post("/api/predict", json={"imageBase64": drawing_url}).status_code == 200
