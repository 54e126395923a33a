"""The Digits web app: `create_app` and the routes.

Importing this module loads no TensorFlow, makes no boto3 client and loads no
model; `create_app` attaches services to `app.extensions` so tests can swap them.
"""

from __future__ import annotations

import io

from flask import Flask, Response, abort, current_app, jsonify, request, send_file
from werkzeug.wsgi import get_content_length

import functions
from digits import config, dataset, fastpath, logs, malloc, openapi, security, settings
from digits.auth import admin_required, check_admin
from digits.images import BadInput, decode_drawing, json_object, parse_label
from digits.nets import NETS
from digits.storage import NotFound, Storage, StorageUnavailable, open_storage


# A setting that cannot be used stops flask's commands with one line, not a traceback
# (digits/cli_errors.py checks the same settings before gunicorn or digits.local start).
@settings.exit_on_bad_setting()
def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    config.load(app, test_config)
    app.extensions["storage"] = app.config.get("STORAGE") or open_storage(
        app.config["STORAGE_URL"], app.config["AWS_ENDPOINT_URL"]
    )
    # Models: LiteRT serving, kept current by a watcher thread (functions.py)
    malloc.keep_buffers()  # each drawing's 160 kB buffers: reused, not mmapped afresh
    app.extensions["models"] = functions.service_for(app.config, app.extensions["storage"])
    app.register_error_handler(functions.ModelsUnavailable, models_unavailable)
    # Admin routes refuse strangers before check_body reads (or rejects) the body.
    app.before_request(guard_model_admin)
    register_cli(app)
    app.register_error_handler(BadInput, lambda e: (jsonify(error=str(e)), 400))
    app.register_error_handler(StorageUnavailable, storage_unavailable)
    # Production: request log first (it times everything), then headers and limits
    logs.init_app(app)
    fastpath.init_app(app)  # before security's proxy fix wraps it: it must see the fixed environ
    size_chunked_bodies(app)  # outside the fast path, which takes only sized bodies
    security.init_app(app)
    openapi.init_app(app)
    app.before_request(check_body)
    register_routes(app)
    from digits.pages import bp as pages

    app.register_blueprint(pages)
    return app


def register_cli(app: Flask) -> None:
    from digits.cli_dataset import dataset_group

    app.cli.add_command(dataset_group)
    from digits.cli_train import evaluate_command, train_command

    app.cli.add_command(train_command)
    app.cli.add_command(evaluate_command)
    # Learning from users: the trainer command (TensorFlow loads only when it runs)
    from digits.cli_trainer import trainer_command

    app.cli.add_command(trainer_command)
    # Models: flask models list|rollback (digits/cli_models.py)
    from digits.cli_models import models_group

    app.cli.add_command(models_group)


def storage() -> Storage:
    return current_app.extensions["storage"]


def storage_unavailable(error: StorageUnavailable):
    current_app.logger.error("storage unavailable: %s", error)
    message = "storage is unavailable right now, please try again"
    if request.method == "POST":  # a save, feedback or rollback: none of it happened
        message = "storage is unavailable right now; nothing was saved, please try again"
    return jsonify(error=message), 503


def check_body() -> None:
    """Refuse oversized and unsupported bodies before anything reads them."""
    if request.method not in ("POST", "PUT", "PATCH") or request.routing_exception is not None:
        return  # no such route, or not this method: Flask's 404 or 405 says so
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        abort(413, f"the request body is larger than {limit // 1024} KB")
    if request.mimetype not in (
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        abort(415, "send JSON (application/json) or a form (application/x-www-form-urlencoded)")


def size_chunked_bodies(app: Flask) -> None:
    """Give a chunked body a length, so that check_body refuses it when it is too large.

    werkzeug reads a body that has no Content-Length up to MAX_CONTENT_LENGTH and then stops
    without a word, so an oversized upload would be parsed cut short (and a form saved).
    Reading one byte past the limit tells the two apart.
    """
    inner = app.wsgi_app

    def wsgi_app(environ: dict, start_response):
        if environ.get("wsgi.input_terminated") and get_content_length(environ) is None:
            limit = app.config["MAX_CONTENT_LENGTH"]
            body = environ["wsgi.input"].read(-1 if limit is None else limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores the length if chunked
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app


def request_fields() -> dict:
    if request.mimetype == "application/json":
        return json_object(request.get_data())
    return request.form.to_dict()


def json_fields() -> dict:
    """The body of an endpoint that takes JSON only, as documented: a form has no true, false
    or null, so its "true" would only be refused as not a boolean."""
    if request.mimetype != "application/json":
        abort(415, "send JSON (application/json): a form cannot say true, false or null")
    return request_fields()


def register_routes(app: Flask) -> None:
    app.add_url_rule("/hook", view_func=hook, methods=["POST"])
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/api/dataset/counts", view_func=dataset_counts)
    app.add_url_rule("/api/dataset", view_func=dataset_page)
    app.add_url_rule("/api/dataset/image/<name>", view_func=dataset_image)
    app.add_url_rule("/api/dataset/<name>", view_func=dataset_delete, methods=["DELETE"])
    app.add_url_rule("/api/dataset/export", view_func=dataset_export)
    register_learning_routes(app)  # learning from users: see the block at the end
    register_model_routes(app)  # models: see the block at the end


def hook():
    """Save a labelled drawing (the original site's contract)."""
    fields = request_fields()
    label = parse_label(fields.get("digit"))
    png, _ = decode_drawing(fields.get("imageBase64"))
    name = dataset.save_drawing(storage(), png, str(label), "collect")
    return jsonify(saved=True, name=name), 201


def healthz():
    try:
        storage().ping()
        storage_state = "ok"
    except StorageUnavailable:
        storage_state = "unavailable"
    # models: the version each net serves in this worker (null when they cannot load)
    return jsonify(status="ok", storage=storage_state, models=models().versions())


def dataset_counts():
    tally = dataset.counts(storage())
    return jsonify(counts=tally, total=sum(tally.values()))  # "none": not a digit, people said


def dataset_page():
    label = request.args.get("label") or None
    if label is not None and label not in dataset.LABELS:
        raise BadInput("label must be 0–9 or none")
    page, per_page = count_arg("page", 1), count_arg("per_page", 48, most=200)
    found = dataset.newest_first(dataset.names(storage(), label))
    pages = max(1, -(-len(found) // per_page))
    chosen = found[(page - 1) * per_page : page * per_page]
    items = [gallery_item(meta) for meta in dataset.iter_metadata(storage(), chosen)]
    return jsonify(items=items, page=page, pages=pages, total=len(found))


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


def dataset_image(name: str):
    """One drawing's PNG. Browsers keep it but ask again before each use, so one an admin
    deleted is gone at once; asking again costs one metadata read and a 304 without the PNG."""
    try:
        etag = dataset.image_etag(storage(), name)
        # RFC 9110 13.2.2's order: If-Match first (a strong match, or "*"), then If-None-Match.
        if request.if_match and not request.if_match.contains(etag):
            abort(412, "the drawing's ETag does not match If-Match")
        if request.if_none_match.contains_weak(etag):
            return revalidated_each_time(Response(status=304), etag)
        png = dataset.committed_image(storage(), name)
    except (ValueError, NotFound):
        abort(404, "no such drawing")
    return revalidated_each_time(png_response(png, etag), etag)


PRECONDITIONS = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")


def png_response(png: bytes, etag: str) -> Response:
    """The PNG, or the part a Range asks for (If-Range included). The preconditions are settled
    above: werkzeug's own check answers If-Match: * with a 412 that holds the PNG."""
    settled = {k: v for k, v in request.environ.items() if k not in PRECONDITIONS}
    response = current_app.response_class(png, mimetype="image/png")
    response.set_etag(etag)
    return response.make_conditional(settled, accept_ranges=True, complete_length=len(png))


def revalidated_each_time(response: Response, etag: str) -> Response:
    response.set_etag(etag)
    response.cache_control.no_cache = True
    response.cache_control.max_age = None
    return response


@admin_required
def dataset_delete(name: str):
    try:
        dataset.delete(storage(), name)
    except (ValueError, NotFound):
        abort(404, "no such drawing")
    return jsonify(deleted=True, name=name)


@admin_required
def dataset_export():
    buffer = io.BytesIO()
    dataset.write_zip(storage(), buffer)
    buffer.seek(0)
    return send_file(
        buffer, mimetype="application/zip", as_attachment=True, download_name="digits-dataset.zip"
    )


# Learning from users: POST /api/feedback, GET /api/stats (digits/feedback.py, stats.py)
def register_learning_routes(app: Flask) -> None:
    app.add_url_rule("/api/feedback", view_func=give_feedback, methods=["POST"])
    app.add_url_rule("/api/stats", view_func=learning_stats)


def give_feedback():
    """Record the user's answer once; the trainer process learns it later (never here)."""
    from digits import feedback

    try:
        feedback.record_feedback(storage(), json_fields())
    except feedback.UnknownPrediction:
        abort(404, "no such prediction")
    except feedback.AlreadyAnswered:
        abort(409, "this prediction already has feedback")
    return jsonify(recorded=True), 202


def learning_stats():
    from digits import stats

    return jsonify(stats.cached_stats(storage(), current_app.config["MODELS_DIR"]))


# Models: POST /api/predict, GET /api/models, POST /api/models/rollback
# (functions.py serves the nets, digits/predictions.py keeps the records, digits/registry.py
# holds the versions)
def register_model_routes(app: Flask) -> None:
    app.add_url_rule("/api/predict", view_func=predict, methods=["POST"])
    app.add_url_rule("/api/models", view_func=models_info)
    app.add_url_rule("/api/models/rollback", view_func=models_rollback, methods=["POST"])


def models() -> functions.ModelService:
    return current_app.extensions["models"]


def guard_model_admin() -> None:
    # A browser's CORS preflight carries no token: flask-cors answers it.
    if request.endpoint == "models_rollback" and request.method != "OPTIONS":
        check_admin()


def models_unavailable(error: functions.ModelsUnavailable):
    current_app.logger.error("models unavailable: %s", error)
    return jsonify(error="the models are unavailable right now, please try again"), 503


def predict():
    """Both nets' answer for a drawing; its record is saved in the background."""
    from digits import predictions

    fields = request_fields()
    png, image = decode_drawing(fields.get("imageBase64"))
    return jsonify(predictions.recognise(models().recognizer(), storage(), png, image))


def models_info():
    return jsonify(nets=models().describe())


@admin_required
def models_rollback():
    from digits import registry

    fields = request_fields()
    net, version = fields.get("net"), fields.get("version")
    if net not in NETS:
        raise BadInput(f"net must be one of {', '.join(NETS)}")
    if not registry.is_version(version):
        raise BadInput('version must be "original" or a published version')
    try:
        pointer = registry.rollback(storage(), net, version, by="api")
    except NotFound:
        abort(404, f"{net} has no version {version}")
    except functions.BadModel as e:
        abort(422, f"{e}; not rolled back")
    try:
        models().refresh()  # this worker at once; the others within MODEL_POLL_SECONDS
    except StorageUnavailable:
        pass  # the pointer moved; the watcher swaps once storage answers again
    return jsonify(pointer=pointer)
