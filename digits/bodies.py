"""Request bodies: which ones the app takes, and the fields in them.

Every body is checked before anything reads it: `refusal` says whether a body of that size and
type is refused, and why. Flask asks it in `check_body` (a hook of the API's blueprints), the fast
path asks it in `FastPredict.takes`. A chunked body gets a length first (`size_chunked`, a WSGI
layer), so that the size check sees it too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import TypeVar

from flask import Flask, abort, current_app, request
from werkzeug.wsgi import get_content_length

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
View = TypeVar("View", bound=Callable)
ACCEPTED = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
JSON_OR_FORM = "send JSON (application/json) or a form (application/x-www-form-urlencoded)"
JSON_ONLY = "send JSON (application/json): a form cannot say true, false or null"


class BadInput(ValueError):
    """The request cannot be accepted; the message says why, for the client."""


def refusal(
    length: int | None, mimetype: str, limit: int | None, json_only: bool = False
) -> tuple[int, str] | None:
    """(status, message) for a body that is refused before anyone reads it, else None."""
    if length is not None and limit is not None and length > limit:
        return 413, f"the request body is larger than {limit // 1024} KB"
    if json_only and mimetype != "application/json":
        return 415, JSON_ONLY
    if mimetype not in ACCEPTED:
        return 415, JSON_OR_FORM
    return None


def json_only(view: View) -> View:
    """Mark a view that takes JSON only, so check_body refuses anything else saying just that
    (an endpoint that takes forms too says so in its refusal)."""
    view.json_only = True  # type: ignore[attr-defined]
    return view


def check_body() -> None:
    """Refuse oversized and unsupported bodies before anything reads them."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    view = current_app.view_functions.get(request.endpoint or "")
    taken = getattr(view, "json_only", False)
    refused = refusal(request.content_length, request.mimetype, limit, json_only=taken)
    if refused is not None:
        abort(*refused)


def size_chunked(app: Flask, inner: WSGIApp) -> WSGIApp:
    """Give a chunked body a length, so that check_body refuses it when it is too large.

    werkzeug reads a body that has no Content-Length up to MAX_CONTENT_LENGTH and then stops
    without a word, so an oversized upload would be parsed cut short (and a form saved).
    Reading one byte past the limit tells the two apart.
    """

    def wsgi_app(environ: dict, start_response):
        if environ.get("wsgi.input_terminated") and get_content_length(environ) is None:
            limit = app.config["MAX_CONTENT_LENGTH"]
            body = environ["wsgi.input"].read(-1 if limit is None else limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores the length if chunked
        return inner(environ, start_response)

    return wsgi_app


def request_fields() -> dict:
    """The fields of the request's JSON object or form."""
    if request.mimetype == "application/json":
        return json_object(request.get_data())
    return request.form.to_dict()


def json_fields() -> dict:
    """The body of an endpoint that takes JSON only, as documented: a form has no true, false
    or null, so its "true" would only be refused as not a boolean."""
    if request.mimetype != "application/json":
        abort(415, JSON_ONLY)
    return request_fields()


def json_object(body: bytes) -> dict:
    """The fields of a JSON body, which must be an object; BadInput says which it is not."""
    try:
        data = json.loads(body)
    # ValueError: bad syntax or UTF-8, or a number of thousands of digits (int() refuses them);
    # RecursionError: nested deeper than the parser goes.
    except (ValueError, RecursionError):
        raise BadInput("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the body is not a JSON object")
    return data


def parse_label(value: object) -> int:
    """A digit label from a form or JSON field: "0"–"9" or 0–9."""
    if isinstance(value, bool):
        raise BadInput("digit must be a single digit 0–9")
    if isinstance(value, int) and 0 <= value <= 9:
        return value
    if isinstance(value, str) and len(value) == 1 and value in "0123456789":
        return int(value)
    if value is None or value == "":
        raise BadInput("digit is missing")
    raise BadInput("digit must be a single digit 0–9")
