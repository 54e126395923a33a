"""One structured (JSON) log line per request, on stdout, where Heroku's log router reads it.

    {"event": "request", "method": "POST", "path": "/hook", "status": 201,
     "ms": 4.2, "client": "203.0.113.7", "request_id": "6f1c..."}

The request id comes from Heroku's router (`X-Request-ID`) when it looks sane, so a
line here can be matched with the router's line; otherwise we make one. It is echoed
back in the response's `X-Request-ID` header.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from random import getrandbits
from typing import TextIO

from flask import Flask, Response, current_app, g, request

# Heroku's ids are UUIDs; accept anything id-like but nothing that could forge a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,200}")


class RequestLog:
    """Writes each line whole and at once, so lines from a worker's threads never interleave.

    Not the logging module: a LogRecord, a formatter and a handler cost about 40 µs a line,
    a third of everything the app adds to a prediction. Tests swap `stream`.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: whatever sys.stdout is when a line is written
        self._lock = threading.Lock()

    def write(self, line: dict) -> None:
        text = json.dumps(line) + "\n"
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()  # Heroku's router reads stdout as it comes


def init_app(app: Flask) -> None:
    if not app.config["LOG_REQUESTS"]:
        return
    app.extensions["request_log"] = RequestLog()
    app.before_request(start_timer)
    app.after_request(log_request)


def request_id(environ: dict) -> str:
    given = environ.get("HTTP_X_REQUEST_ID", "")
    # An id only needs to be unique, not secret: 128 random bits, as many as a uuid4 has.
    return given if _REQUEST_ID.fullmatch(given) else f"{getrandbits(128):032x}"


def start_timer() -> None:
    g.request_started = time.perf_counter()


def log_request(response: Response) -> Response:
    # A request refused before start_timer ran (e.g. by an earlier hook) still gets a line.
    started = g.get("request_started") or time.perf_counter()
    rid = request_id(request.environ)
    response.headers["X-Request-ID"] = rid
    entry = line(request.environ, request.path, response.status_code, started, rid)
    current_app.extensions["request_log"].write(entry)
    return response


def direct_request_line(
    app: Flask, environ: dict, path: str, status: int, started: float
) -> list[tuple[str, str]]:
    """For an answer a WSGI layer writes without Flask: the log line, and its X-Request-ID
    header (none when LOG_REQUESTS is off), as log_request gives Flask's answers."""
    log = app.extensions.get("request_log")
    if log is None:
        return []
    rid = request_id(environ)
    log.write(line(environ, path, status, started, rid))
    return [("X-Request-ID", rid)]


def line(environ: dict, path: str, status: int, started: float, rid: str) -> dict:
    """A request's log line; `started` is its time.perf_counter() on arrival."""
    return {
        "event": "request",
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "client": environ.get("REMOTE_ADDR"),
        "request_id": rid,
    }
