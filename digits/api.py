"""The public JSON API: a blueprint of the views and of the check every body gets first.

Each view is a few lines: read the request, call the module that owns the work, answer JSON.
The admin endpoints are digits/admin.py's; POST /api/predict's path is digits/predict.py.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, request

from digits import dataset, db, feedback, gallery, lifecycle, openapi, public, records, stats
from digits import predict as prediction
from digits.bodies import (
    BadInput,
    check_body,
    json_fields,
    json_only,
    parse_label,
    request_fields,
)
from digits.serving import ModelService
from digits.storage import NotFound, Storage, StorageUnavailable

bp = Blueprint("api", __name__)
bp.before_request(check_body)
bp.add_url_rule("/api/openapi.json", view_func=openapi.openapi_json)


def storage() -> Storage:
    return current_app.extensions["storage"]


def engine():
    return db.engine_of(current_app)


def models() -> ModelService:
    return current_app.extensions["models"]


@bp.post("/api/predict")
def predict():
    """Both nets' answer for a drawing; its record is saved in the background."""
    png, image = prediction.drawing(request_fields())
    return jsonify(prediction.recognise(models().recognizer(), storage(), png, image))


@bp.post("/api/feedback")
@json_only
def give_feedback():
    """Record the user's answer once; the trainer process learns it later (never here)."""
    try:
        feedback.record_feedback(storage(), engine(), json_fields())
    except feedback.UnknownPrediction:
        abort(404, "no such prediction")
    except feedback.AlreadyAnswered:
        abort(409, "this prediction already has feedback")
    return jsonify(recorded=True), 202


@bp.post("/hook")
def hook():
    """Save a labelled drawing (the original site's contract)."""
    fields = request_fields()
    label = parse_label(fields.get("digit"))
    png, _ = prediction.drawing(fields)
    # The blobs, then their index row in a short transaction: a database that is down is a
    # 503, and the blobs are withdrawn (nothing saved).
    indexer = records.indexer(engine())
    name = dataset.save_drawing(storage(), png, str(label), "collect", on_saved=indexer)
    return jsonify(saved=True, name=name), 201


@bp.get("/healthz")
def healthz():
    try:
        storage().ping()
        storage_state = "ok"
    except StorageUnavailable:
        storage_state = "unavailable"
    database_state = "ok" if db.answers(engine()) else "unavailable"
    # The version each net serves in this worker (null when they cannot load).
    return jsonify(
        status="ok", storage=storage_state, database=database_state, models=models().versions()
    )


@bp.get("/api/stats")
def learning_stats():
    config = current_app.config
    models_dir, shown = config["MODELS_DIR"], config["KEEP_VERSIONS"]
    body, etag = stats.cached_stats(storage(), engine(), models_dir, shown, public.rendered_json)
    return public.cacheable(body, etag)


@bp.get("/api/models")
def models_info():
    models_dir = current_app.config["MODELS_DIR"]

    def card_of(net: str, version: str) -> dict:  # from the database, not a metrics.json
        return lifecycle.card(storage(), engine(), models_dir, net, version)

    return jsonify(nets=models().describe(card_of))


@bp.get("/api/dataset/counts")
def dataset_counts():
    with db.reading(engine()) as conn:
        tally = records.counts(conn)
    # "none": not a digit, people said
    return public.revalidated_json({"counts": tally, "total": sum(tally.values())})


@bp.get("/api/dataset")
def dataset_page():
    label = request.args.get("label") or None
    if label is not None and label not in dataset.LABELS:
        raise BadInput("label must be 0–9 or none")
    page, per_page = count_arg("page", 1), count_arg("per_page", 48, most=200)
    with db.reading(engine()) as conn:
        shown, total = gallery.gallery_page(conn, label, page, per_page)
    pages = max(1, -(-total // per_page))
    items = [gallery_item(meta) for meta in shown]
    return public.revalidated_json({"items": items, "page": page, "pages": pages, "total": total})


def count_arg(name: str, default: int, most: int | None = None) -> int:
    """A whole number from 1 (to `most`) in the query string, else a 400 that says so."""
    value = request.args.get(name, str(default))
    digits = value.isascii() and value.isdigit()
    if digits and len(value) > 18:  # no page is that far; int() refuses thousands of digits
        raise BadInput(f"{name} is too large")
    if not digits or int(value) < 1:
        raise BadInput(f"{name} must be a whole number from 1")
    if most is not None and int(value) > most:
        raise BadInput(f"{name} must be at most {most}")
    return int(value)


def gallery_item(meta: dict) -> dict:
    name = meta["name"]
    return {
        "name": name,
        "label": meta["label"],
        "created": meta.get("created"),
        "source": meta.get("source"),
        "url": f"/api/dataset/image/{name}",
        "delete_url": f"/api/dataset/{name}",
    }


@bp.get("/api/dataset/image/<name>")
def dataset_image(name: str):
    """One drawing's PNG. Browsers keep it but ask again before each use, so one an admin
    deleted is gone at once; asking again costs one metadata read and a 304 without the PNG."""
    try:
        etag = dataset.image_etag(storage(), name)
        # RFC 9110 13.2.2's order: If-Match first (a strong match, or "*"), then If-None-Match.
        if request.if_match and not request.if_match.contains(etag):
            abort(412, "the drawing's ETag does not match If-Match")
        if request.if_none_match.contains_weak(etag):
            return public.reusable(Response(status=304), etag, fresh_for=False)
        png = dataset.committed_image(storage(), name)
    except (ValueError, NotFound):
        abort(404, "no such drawing")
    return public.reusable(png_response(png, etag), etag, fresh_for=False)


PRECONDITIONS = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")


def png_response(png: bytes, etag: str) -> Response:
    """The PNG, or the part a Range asks for (If-Range included). The preconditions are settled
    above: werkzeug's own check answers If-Match: * with a 412 that holds the PNG."""
    settled = {k: v for k, v in request.environ.items() if k not in PRECONDITIONS}
    response = current_app.response_class(png, mimetype="image/png")
    response.set_etag(etag)
    return response.make_conditional(settled, accept_ranges=True, complete_length=len(png))
