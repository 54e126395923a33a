"""The admin endpoints (dataset export and delete, model rollback and pin), behind a bearer token.

The token is the `ADMIN_TOKEN` setting; unset, the endpoints are off. The blueprint checks it
before anything else it does, so a stranger is refused before the body is read or checked.
"""

from __future__ import annotations

import hmac
import io

from flask import Blueprint, abort, current_app, jsonify, request, send_file
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from digits import dataset, db, lifecycle, records, registry
from digits.bodies import BadInput, check_body, json_fields, request_fields
from digits.model import BadModel
from digits.nets import NETS
from digits.storage import NotFound, StorageUnavailable

bp = Blueprint("admin", __name__)


@bp.before_request
def check_admin() -> None:
    if request.method == "OPTIONS":  # a browser's CORS preflight carries no token: flask-cors
        return
    expected = current_app.config["ADMIN_TOKEN"] or ""
    if not expected:
        abort(403, "admin endpoints are off: set ADMIN_TOKEN to enable them")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        message = "admin token required: send Authorization: Bearer <ADMIN_TOKEN>"
        raise Unauthorized(message, www_authenticate=WWWAuthenticate("bearer"))
    # compare_digest: the time taken must not reveal how much of the token matched.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        abort(403, "wrong admin token")


bp.before_request(check_body)  # after the token: strangers learn nothing about bodies


@bp.get("/api/dataset/export")
def dataset_export():
    buffer = io.BytesIO()
    dataset.write_zip(current_app.extensions["storage"], buffer)
    buffer.seek(0)
    return send_file(
        buffer, mimetype="application/zip", as_attachment=True, download_name="digits-dataset.zip"
    )


@bp.delete("/api/dataset/<name>")
def dataset_delete(name: str):
    try:
        dataset.label_of(name)
    except ValueError:
        abort(404, "no such drawing")
    # Marked first: hidden at once, and never copied back by the trainer's repair; a delete
    # from storage that fails (503) is finished by a retry.
    with db.writing(db.engine_of(current_app)) as conn:
        marked = records.mark_deleted(conn, name)
    try:
        dataset.delete(current_app.extensions["storage"], name)
    except NotFound:
        if not marked:
            abort(404, "no such drawing")
    return jsonify(deleted=True, name=name)


@bp.post("/api/models/rollback")
def models_rollback():
    fields = request_fields()
    net, version = fields.get("net"), fields.get("version")
    if net not in NETS:
        raise BadInput(f"net must be one of {', '.join(NETS)}")
    if not registry.is_version(version):
        raise BadInput('version must be "original" or a published version')
    try:
        pointer = registry.rollback(current_app.extensions["storage"], net, version, by="api")
    except NotFound:
        abort(404, f"{net} has no version {version}")
    except BadModel as e:
        abort(422, f"{e}; not rolled back")
    try:
        # This worker at once; the others within MODEL_POLL_SECONDS.
        current_app.extensions["models"].refresh()
    except StorageUnavailable:
        pass  # the pointer moved; the watcher swaps once storage answers again
    return jsonify(pointer=pointer)


@bp.post("/api/models/pin")
def models_pin():
    """Pin a published version (never pruned), or unpin it with "pinned": false."""
    fields = json_fields()
    net, version, pinned = fields.get("net"), fields.get("version"), fields.get("pinned")
    if net not in NETS:
        raise BadInput(f"net must be one of {', '.join(NETS)}")
    if version == registry.ORIGINAL:
        raise BadInput("the original is always kept: it ships with the app")
    if not registry.is_version(version):
        raise BadInput("version must be a published version")
    if not isinstance(pinned, bool):
        raise BadInput("pinned must be true or false")
    storage, engine = current_app.extensions["storage"], db.engine_of(current_app)
    try:
        return jsonify(lifecycle.pin(storage, engine, net, version, pinned, by="api"))
    except NotFound:
        abort(404, f"{net} has no version {version}")
