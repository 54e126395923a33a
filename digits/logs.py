"""One structured (JSON) log line per request, on stdout, where Heroku's log router reads it.

    {"event": "request", "method": "POST", "path": "/hook", "status": 201,
     "ms": 4.2, "client": "203.0.113.7", "request_id": "6f1c..."}

The request id comes from Heroku's router (`X-Request-ID`) when it looks sane, so a
line here can be matched with the router's line; otherwise we make one. It is echoed
back in the response's `X-Request-ID` header.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

from flask import Flask, Response, g, request

LOGGER_NAME = "digits.requests"
# Heroku's ids are UUIDs; accept anything id-like but nothing that could forge a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,200}")


def init_app(app: Flask) -> None:
    app.config.setdefault("LOG_REQUESTS", True)
    if str(app.config["LOG_REQUESTS"]).lower() in ("0", "off", "false", ""):
        return
    app.extensions["request_logger"] = request_logger()
    app.before_request(start_timer)
    app.after_request(log_request)


def request_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        # The line is already JSON: no prefix, so log tools can parse it as is.
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def request_id() -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()  # as random as uuid4


def start_timer() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id()


def log_request(response: Response) -> Response:
    # A request refused before start_timer ran (e.g. by an earlier hook) still gets a line.
    started = g.get("request_started", time.perf_counter())
    rid = g.get("request_id") or request_id()
    response.headers["X-Request-ID"] = rid
    line = {
        "event": "request",
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "client": request.remote_addr,
        "request_id": rid,
    }
    logging.getLogger(LOGGER_NAME).info(json.dumps(line))
    return response
