"""The admin endpoints (dataset exports and delete, model rollback and pin), behind a bearer token.

The token is the `ADMIN_TOKEN` setting; unset, the endpoints are off. The blueprint checks it
before anything else it does, so a stranger is refused before the body is read or checked.

An export is a job (digits/exports.py): POST /api/dataset/exports queues it, the trainer
worker builds it, and its status gives the progress and then a link. No request builds a zip.
"""

from __future__ import annotations

import hmac
from typing import BinaryIO

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file, url_for
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import RequestedRangeNotSatisfiable, Unauthorized

from digits import dataset, db, exports, lifecycle, records, registry
from digits.bodies import BadInput, check_body, json_fields, json_only, request_fields
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


@bp.before_request
def check_admin_body() -> None:
    """After the token: strangers learn nothing about bodies. Starting an export takes no body,
    so a bare `curl -X POST` (no Content-Type either) is taken."""
    if request.endpoint == "admin.export_create" and not request.content_length:
        return
    check_body()


# --- exports ---------------------------------------------------------------------------------


@bp.post("/api/dataset/exports")
def export_create():
    """Queue an export, or join the one queued or running: 202, and where to follow it."""
    current_app.extensions["storage"].ping()  # storage away: a 503 now, not a failed job later
    job, _ = exports.request(db.engine_of(current_app))
    body = job_json(job)
    return jsonify(body), 202, {"Location": body["url"]}


@bp.get("/api/dataset/exports/<job_id>")
def export_status(job_id: str):
    return jsonify(job_json(job_or_404(job_id)))


@bp.get("/api/dataset/exports/<job_id>/download")
def export_download(job_id: str):
    """The zip: from this app on a local folder, from S3 itself (a presigned link) on S3."""
    job = job_or_404(job_id)
    if job["state"] != "done":
        abort(409, f"this export is {job['state']}, not done: follow its url until it is")
    link = presigned(job)
    if link is not None:
        return jsonify(job_json(job)), 303, {"Location": link}
    try:
        file = current_app.extensions["storage"].open(job["key"])
    except NotFound:
        abort(404, "this export's file is gone; ask for a new export")
    return resumable_zip(file, job)


def resumable_zip(file: BinaryIO, job: dict) -> Response:
    """The zip with its Content-Length, and the part a Range asks for (206), so a download of
    hundreds of MB that broke off resumes. An open file tells send_file no size, so the job's
    own (`bytes`, what was uploaded) is given; the key, one per attempt and never rewritten, is
    the ETag that If-Range checks."""
    response = send_file(
        file,
        mimetype="application/zip",
        as_attachment=True,
        download_name=exports.FILENAME,
        etag=job["key"],
        last_modified=job["finished_at"],
        conditional=False,  # without a size it could not answer a Range: done below
    )
    response.content_length = job["bytes"]
    try:
        return response.make_conditional(request, accept_ranges=True, complete_length=job["bytes"])
    except RequestedRangeNotSatisfiable:
        file.close()  # the 416 is raised, and nothing else will close the file
        raise


@bp.get("/api/dataset/export")
def dataset_export():
    """The route of old, when the zip was built in the request (which timed out on Heroku).

    A script that GETs it still gets the zip when one is fresh: a 303 to an export finished in
    the last FRESH_SECONDS (`curl -L` and requests follow it). Otherwise it starts an export (or
    joins the one under way) and answers 409 with its url: an error, so `curl -f` or
    `raise_for_status()` stop instead of saving JSON as a zip, and asking again later works.
    """
    engine = db.engine_of(current_app)
    recent = exports.recent_done(engine, exports.FRESH_SECONDS)
    if recent is not None:
        body = job_json(recent)
        return jsonify(body), 303, {"Location": body["download"]}
    current_app.extensions["storage"].ping()
    job, _ = exports.request(engine)
    body = job_json(job)
    message = (
        f"exports are built in the background now, and this one is {job['state']}: follow its"
        " url (POST /api/dataset/exports starts one), or ask here again once it is done"
    )
    headers = {"Location": body["url"], "Retry-After": str(int(exports.POLL_SECONDS))}
    return jsonify(body | {"error": message}), 409, headers  # the job's own error: at its url


def job_or_404(job_id: str) -> dict:
    job = exports.find(db.engine_of(current_app), job_id) if exports.is_id(job_id) else None
    if job is None:
        abort(404, "no such export (finished exports are kept a day at most)")
    return job


def job_json(job: dict) -> dict:
    """The job's status, its url, and once it is done a link to download it."""
    body = exports.status(job) | {"url": url_for("admin.export_status", job_id=job["id"])}
    if job["state"] == "done":
        body["download"] = download_link(job)
    return body


def download_link(job: dict) -> str:
    """A presigned S3 link, or this app's download route (a local folder)."""
    return presigned(job) or url_for("admin.export_download", job_id=job["id"])


def presigned(job: dict) -> str | None:
    """A link to the zip on S3 itself, good for LINK_SECONDS; None on a local folder."""
    storage = current_app.extensions["storage"]
    return storage.download_url(job["key"], exports.LINK_SECONDS, exports.FILENAME)


# --- drawings and models ---------------------------------------------------------------------


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
@json_only
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
