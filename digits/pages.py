"""The HTML pages. All behaviour lives in static JS; these routes only render templates.

The JSON API is digits/api.py's and digits/admin.py's: pages reach it through the paths in
`api_urls()`, and learn the nets' names from digits/nets.py, both handed to the scripts in data-*
attributes (no inline scripts: the Content-Security-Policy allows files from this origin only).
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from PIL import Image
from werkzeug.routing import BuildError

from digits import db, lifecycle, png, preprocess, public, registry
from digits.nets import KINDS, NETS, TITLES
from digits.storage import StorageError, etag_of

bp = Blueprint("pages", __name__)

# The JSON API, by endpoint name and the path the contract fixes: url_for when the endpoint is
# registered, so a mounted app gets the right prefix; the literal path otherwise, so a page never
# fails to render.
_API = {
    "predict": ("api.predict", "/api/predict"),
    "feedback": ("api.give_feedback", "/api/feedback"),
    "hook": ("api.hook", "/hook"),
    "counts": ("api.dataset_counts", "/api/dataset/counts"),
    "dataset": ("api.dataset_page", "/api/dataset"),
    "export": ("admin.export_create", "/api/dataset/exports"),
    "stats": ("api.learning_stats", "/api/stats"),
}

SAMPLE_DRAWING = "img/sample-drawing.png"


def api_urls() -> dict[str, str]:
    return {name: _url(endpoint, path) for name, (endpoint, path) in _API.items()}


def _url(endpoint: str, path: str) -> str:
    try:
        return url_for(endpoint)
    except BuildError:
        return request.script_root + path


@bp.app_context_processor
def _inject_api_urls() -> dict:
    return {"api_urls": api_urls, "nets": NETS, "net_titles": TITLES, "net_kinds": KINDS}


@bp.route("/")
def index():
    return same_for_everyone("index")


@bp.route("/collect")
def collect():
    return same_for_everyone("collect")


@bp.route("/stats")
def stats():
    return same_for_everyone("stats")


@bp.route("/dataset")
def dataset():
    return same_for_everyone("dataset")


@bp.route("/about")
def about():
    return same_for_everyone("about")


def same_for_everyone(page: str) -> Response:
    """A page with nothing of the visitor's in it: rendered once per app and mount point, then
    its bytes reused, and cacheable by browsers (digits/public.py)."""
    key = (page, request.script_root)
    kept = current_app.extensions.setdefault("rendered_pages", {})
    if key not in kept:
        body = render_template(f"{page}.html", page=page).encode()
        kept[key] = (body, etag_of(body))
    return public.cacheable(*kept[key], mimetype="text/html")


@bp.route("/models")
def models():
    pointer = _pointer()
    cards = {net: model_card(net, pointer.get(net, registry.ORIGINAL)) for net in NETS}
    return render_template("models.html", page="models", cards=cards)


def _pointer() -> dict[str, str]:
    """net -> the version the registry serves, or {} when storage cannot say."""
    try:
        return registry.current(current_app.extensions["storage"])
    except StorageError:
        current_app.logger.exception("models page: the registry is unreadable")
        return {}


def model_card(net: str, version: str) -> dict | None:
    """The card of `version`. A version learned from feedback keeps the shipped net's layers,
    so those come from the shipped card; its measures and its date are its own."""
    shipped = load_model_card(net)
    if version == registry.ORIGINAL:
        return shipped
    storage, engine = current_app.extensions["storage"], db.engine_of(current_app)
    try:  # its row in the database: no metrics.json read
        card = lifecycle.card(storage, engine, str(models_dir()), net, version)
    except StorageError:
        current_app.logger.exception("models page: no card for %s %s", net, version)
        return shipped
    architecture = {k: shipped[k] for k in ("params", "layers") if shipped and k in shipped}
    return _readable({**architecture, **card, "trained_at": card.get("created")})


@bp.route("/favicon.ico")
def favicon():
    # Browsers ask for it on pages that name no icon, such as /api/openapi.json.
    return redirect(url_for("static", filename="img/favicon.svg"), 301)


@bp.route("/internals")
def internals():
    steps, problem = preprocessing_pictures()
    return render_template("internals.html", page="internals", steps=steps, problem=problem)


def models_dir() -> Path:
    return Path(current_app.config["MODELS_DIR"])


def load_model_card(net: str) -> dict | None:
    """The metrics JSON a training run writes next to the model, or None before the first run."""
    path = models_dir() / f"{net}.json"
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        current_app.logger.exception("unreadable model card %s", path)
        return None
    return _readable(card) if isinstance(card, dict) else None


def _readable(card: dict) -> dict:
    """Add display strings the template would otherwise have to work out."""
    card = dict(card)
    card["trained"] = _when(card.get("trained_at"))
    card["layers"] = [
        {**layer, "shape": _shape(layer.get("output_shape"))}
        for layer in card.get("layers") or []
        if isinstance(layer, dict)
    ]
    return card


def _shape(shape) -> str:
    """`[None, 28, 28, 32]` -> `28 × 28 × 32`: the batch dimension says nothing to a reader."""
    if isinstance(shape, str):
        return shape
    if not isinstance(shape, list | tuple):
        return ""
    return " × ".join(str(d) for d in shape if d is not None)


def _when(stamp) -> str:
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp or "")
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.utcoffset() is not None else "")


def preprocessing_pictures() -> tuple[list[dict], str | None]:
    """Each preprocessing step applied to a real drawing, as data-URL PNGs.

    Returns (steps, problem): problem is a sentence for the reader when the
    pictures cannot be made, so the page explains itself instead of failing.
    """
    sample = Path(current_app.static_folder) / SAMPLE_DRAWING
    if not sample.is_file():
        return [], "The sample drawing is missing, so there are no pictures to show."
    try:
        with Image.open(sample) as drawing:
            steps = preprocess.preprocess_steps(drawing.convert("RGB"))
    except Exception:  # a bug there must not take the whole page down
        current_app.logger.exception("preprocess_steps failed on %s", sample)
        return [], "The preprocessing pictures could not be made (see the server log)."
    return [_step_picture(title, image) for title, image in steps], None


def _step_picture(title: str, image) -> dict:
    return {
        "title": title,
        "src": _data_url(_upscale(image)),
        "size": f"{image.width}×{image.height}",
    }


def _upscale(image, target: int = 200):
    """Nearest-neighbour, so a 28×28 image shows its real pixels instead of a blur."""
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("L")
    factor = max(1, target // max(image.width, image.height))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return png.data_url(buffer.getvalue())
