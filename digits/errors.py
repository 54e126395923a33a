"""Every error handler, and the one decision they share: JSON for the API, a page for people.

The API speaks JSON even when it fails, in one sentence (`{"error": …}`); people get a page with
a way back. Either keeps the error's own headers (Allow, WWW-Authenticate, Content-Range).
"""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from digits.bodies import BadInput
from digits.serving import ModelsUnavailable
from digits.storage import StorageUnavailable

# Paths that answer in JSON: the API's, including those with no route (a 404 or a 405).
JSON_PREFIXES = ("/api/", "/hook/", "/healthz/")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(BadInput, lambda e: (jsonify(error=str(e)), 400))
    app.register_error_handler(StorageUnavailable, storage_unavailable)
    app.register_error_handler(ModelsUnavailable, models_unavailable)


def wants_json() -> bool:
    return is_api_path(request.path)


def is_api_path(path: str) -> bool:
    # "/api" itself too, but not a page such as "/hookah"
    return (path + "/").startswith(JSON_PREFIXES)


def http_error(error: HTTPException):
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    if wants_json():
        return jsonify(error=error.description), error.code, headers
    template = "errors/404.html" if error.code == 404 else "errors/error.html"
    return render_template(template, error=error, page=None), error.code, headers


def storage_unavailable(error: StorageUnavailable):
    current_app.logger.error("storage unavailable: %s", error)
    message = "storage is unavailable right now, please try again"
    if request.method == "POST":  # a save, feedback or rollback: none of it happened
        message = "storage is unavailable right now; nothing was saved, please try again"
    return jsonify(error=message), 503


def models_unavailable(error: ModelsUnavailable):
    current_app.logger.error("models unavailable: %s", error)
    return jsonify(error="the models are unavailable right now, please try again"), 503
