"""POST /api/predict without Flask's per-request machinery: the request that is most of the load.

Under load, Flask's request and response objects, routing and hooks cost about an eighth of the
server CPU a prediction takes (bench/load.py, on the same machine at the same time). This WSGI
layer answers the one plain case itself: a JSON body that holds a drawing which decodes. It calls
the same code the Flask view calls (digits/predict.py's `drawing` and `recognise`), after the same
body checks (digits/bodies.py's `refusal`), and it writes the same JSON, headers and log line;
tests compare its answers with Flask's. main.py's `add_wsgi_layers` shows where it sits.

Flask alone decides every other answer. Anything else goes to it untouched, with the body put back:
other routes, a form, an oversized or unsized body, JSON that is not an object, a drawing that does
not decode, nets that cannot load, any request while CORS is on, debug mode. Nothing is
stored before that hand-over. The one exception is a bug inside `recognise` itself: Flask then
runs the view again to answer its 500, and the prediction's record may be queued twice.

`FAST_PREDICT=off` turns the layer off, which leaves the Flask view to answer every prediction.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable

from flask import Flask

from digits import logs, predict, security
from digits.bodies import BadInput, WSGIApp, json_object, refusal
from digits.origin import cross_site
from digits.preprocess import Drawing
from digits.serving import ModelsUnavailable, Recognizer

PATH = "/api/predict"


def layer(app: Flask, inner: WSGIApp) -> WSGIApp:
    """The layer around `inner`, or `inner` itself when FAST_PREDICT is off."""
    return FastPredict(app, inner) if app.config["FAST_PREDICT"] else inner


class FastPredict:
    """The WSGI layer: `__call__` answers a plain prediction, or hands the request to Flask."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        # Read once, as flask-cors reads it once: it adds its headers to every answer when
        # origins are set, Origin header or not, so then Flask answers every prediction.
        self.cors = bool(app.config["CORS_ORIGINS"])

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not self.takes(environ):
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        drawing = self.drawing(body)
        recognizer = self.recognizer() if drawing is not None else None
        if recognizer is None:
            return self.to_flask(environ, start_response, body)
        try:
            found = predict.recognise(recognizer, self.app.extensions["storage"], *drawing)
        except Exception:  # a bug: Flask runs the view again and answers (and logs) its 500
            return self.to_flask(environ, start_response, body)
        return self.answer(environ, start_response, found, started)

    def to_flask(self, environ: dict, start_response: Callable, body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it as if nobody had
        return self.flask_wsgi(environ, start_response)

    def takes(self, environ: dict) -> bool:
        """Only a POST of a sized JSON body within the limit, and only with CORS off."""
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return False
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        if mimetype != "application/json" or not length.isdigit():
            return False
        if refusal(int(length), mimetype, self.app.config["MAX_CONTENT_LENGTH"]) is not None:
            return False  # Flask refuses it, in the same words
        if ("POST", PATH) in self.app.extensions.get("rate_limiters", {}):
            return False  # predictions are not limited today; if they are, Flask does it
        if cross_site(environ, allowed=[]) is not None:
            return False  # Flask refuses it (with CORS on, Flask answers every prediction)
        return not (self.cors or self.app.debug or self.app.json.compact is False)

    def drawing(self, body: bytes) -> tuple[bytes, Drawing] | None:
        """(png, decoded) if the body is a JSON object with a drawing that decodes, else None."""
        try:
            return predict.drawing(json_object(body))
        except BadInput:  # Flask answers it, in the same words
            return None

    def recognizer(self) -> Recognizer | None:
        try:
            return self.app.extensions["models"].recognizer()
        except ModelsUnavailable:  # Flask's handler answers 503
            return None

    def answer(self, environ: dict, start_response: Callable, found: dict, started: float):
        """What `jsonify(found)` and the after-request hooks would send, written directly."""
        text = (self.app.json.dumps(found, separators=(",", ":")) + "\n").encode()
        headers = [("Content-Type", self.app.json.mimetype), ("Content-Length", str(len(text)))]
        headers += security.response_headers(environ.get("wsgi.url_scheme") in ("https", "wss"))
        headers += logs.direct_request_line(self.app, environ, PATH, 200, started)
        start_response("200 OK", headers)
        return [text]
