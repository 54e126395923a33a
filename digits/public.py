"""Public reads cannot starve predictions: a bound per worker on the threads they hold.

gunicorn's gthread worker (gunicorn.conf.py) serves GUNICORN_THREADS requests at once (4) and
queues the rest in arrival order, predictions among them. Four visitors opening /stats at once
used to hold all four threads of a worker while predictions and /healthz waited (issue 18). So
the public reads (`is_public_read`: the stats, the gallery, the counts, the drawings' images,
the model cards and the preprocessing pictures) hold at most PUBLIC_READS threads of a worker
at once (default 2 of 4): the others always remain for predictions, feedback, saves and
/healthz.

A read that finds every slot taken is answered at once: 503 with `Retry-After: 1`, JSON for the
API and a page for people, as nginx's `limit_conn` answers. It does not wait for a slot: in a
gthread worker a waiting request holds a thread, the very thing the bound keeps free. The
pages' scripts ask again after the Retry-After (static/js/common.js, static/js/dataset.js). The
refusal is written here, in a WSGI layer before Flask, because under a flood the refusals are
the load: one costs tens of microseconds, where Flask's machinery costs hundreds.

`PUBLIC_READS=0` turns the bound off. With CORS_ORIGINS set, a refusal carries the CORS headers
flask-cors would give the answer it stands for (`security.cors_headers`), so a script on an
allowed site reads the 503 and its Retry-After rather than a network error. Per client IP,
RATE_LIMIT_READS (digits/security.py) limits the API's reads as well; the answers themselves
are cheap to repeat (`cacheable`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import ServiceUnavailable

from digits import logs, security
from digits.bodies import WSGIApp
from digits.errors import is_api_path
from digits.storage import etag_of

RETRY_AFTER_SECONDS = 1
BUSY = "the site is busy right now; please try again in a second"
READ_METHODS = ("GET", "HEAD")
# Exact paths, and path prefixes, of the public reads. /api/dataset/export is the admin's.
READ_PATHS = frozenset(
    ("/api/stats", "/api/dataset", "/api/dataset/counts")
    + ("/stats", "/dataset", "/models", "/internals")
)
READ_PREFIXES = ("/api/dataset/image/",)
# How long browsers and caches may reuse a public read's answer without asking (the stats are
# computed at most this often anyway: digits/stats.py).
MAX_AGE_SECONDS = 5


def is_public_read(environ: dict) -> bool:
    if environ.get("REQUEST_METHOD") not in READ_METHODS:
        return False
    path = environ.get("PATH_INFO", "")
    return path in READ_PATHS or path.startswith(READ_PREFIXES)


class Slots:
    """`size` places, taken without waiting: a thread that waited would be a thread held."""

    def __init__(self, size: int) -> None:
        self._free = threading.BoundedSemaphore(size)

    def take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()


def layer(app: Flask, inner: WSGIApp) -> WSGIApp:
    """The WSGI layer around `inner`, or `inner` itself when PUBLIC_READS is 0."""
    size = app.config["PUBLIC_READS"]
    return BoundedReads(app, inner, size) if size else inner


class BoundedReads:
    """The WSGI layer: a public read takes a slot for its whole answer, or is refused at once."""

    def __init__(self, app: Flask, inner: WSGIApp, size: int) -> None:
        self.app = app
        self.inner = inner
        self.slots = Slots(size)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not is_public_read(environ):
            return self.inner(environ, start_response)
        if not self.slots.take():
            return self.refuse(environ, start_response)
        try:
            return self.whole_answer(environ, start_response)
        finally:
            self.slots.give_back()

    def whole_answer(self, environ: dict, start_response: Callable) -> list[bytes]:
        """The answer read to its end while the slot is held (public reads are small), so the
        slot counts the work, not just the call that starts it."""
        body = self.inner(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    def refuse(self, environ: dict, start_response: Callable) -> list[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if is_api_path(path):
            body, mimetype = self.app.json.dumps({"error": BUSY}).encode(), "application/json"
        else:
            body = self.busy_page(environ.get("SCRIPT_NAME", ""))
            mimetype = "text/html; charset=utf-8"
        headers = [
            ("Content-Type", mimetype),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_SECONDS)),
            ("Cache-Control", "no-store"),
            *security.response_headers(environ.get("wsgi.url_scheme") in ("https", "wss")),
            *security.cors_headers(self.app, environ),
            *logs.direct_request_line(self.app, environ, path, 503, started),
        ]
        start_response("503 SERVICE UNAVAILABLE", headers)
        return [body] if environ["REQUEST_METHOD"] != "HEAD" else []

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one layer per app: it lives as long)
    def busy_page(self, script_name: str) -> bytes:
        """The site's error page for a 503, made once (per mount point) and kept."""
        error = ServiceUnavailable(BUSY, retry_after=RETRY_AFTER_SECONDS)
        with self.app.test_request_context("/", environ_overrides={"SCRIPT_NAME": script_name}):
            return render_template("errors/error.html", error=error, page=None).encode()


# --- answers that browsers and caches may reuse ------------------------------------------------


def cacheable(
    body: bytes, etag: str, mimetype: str = "application/json", fresh_for: bool = True
) -> Response:
    """A public read's answer, which browsers and caches may reuse for MAX_AGE_SECONDS
    (`fresh_for`), or must ask about each time; either way they ask with its ETag, and while
    the content is the same the answer is a 304 without the body."""
    if request.if_none_match.contains_weak(etag):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(body, mimetype=mimetype)
    return reusable(response, etag, fresh_for)


def reusable(response: Response, etag: str, fresh_for: bool = True) -> Response:
    """`response` with its ETag, and how browsers and caches may reuse it: for MAX_AGE_SECONDS
    (`fresh_for`), or only after asking each time (no-cache), which a 304 answers cheaply.
    For answers that settle If-None-Match and Range themselves (the drawings' images)."""
    response.set_etag(etag)
    response.cache_control.public = True
    if fresh_for:
        response.cache_control.max_age = MAX_AGE_SECONDS
    else:
        response.cache_control.no_cache = True
    return response


def rendered_json(answer: object) -> tuple[bytes, str]:
    """`jsonify(answer)`'s body, and its ETag."""
    body = current_app.json.response(answer).get_data()
    return body, etag_of(body)


def revalidated_json(answer: object) -> Response:
    """An answer that must be up to date at once (the counts after a save, a gallery page after
    a delete): browsers ask each time, and a 304 spares the body."""
    return cacheable(*rendered_json(answer), fresh_for=False)
