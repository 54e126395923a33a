"""The Digits web app: `create_app`, which puts the parts together, top to bottom.

Importing this module loads no TensorFlow, makes no boto3 client and loads no model;
`create_app` attaches services to `app.extensions` so tests can swap them. ARCHITECTURE.md
says which module owns what.
"""

from __future__ import annotations

from flask import Flask

from digits import (
    addons,
    admin,
    api,
    bodies,
    config,
    db,
    errors,
    fastpath,
    logs,
    malloc,
    pages,
    public,
    security,
)
from digits.cli_dataset import dataset_group
from digits.cli_db import db_group
from digits.cli_exports import exports_command
from digits.cli_models import models_group
from digits.cli_release import release_command
from digits.cli_retention import retention_command
from digits.cli_train import evaluate_command, train_command
from digits.cli_trainer import trainer_command
from digits.serving import service_for
from digits.settings import exit_on_bad_setting
from digits.storage import open_storage


# A setting that cannot be used stops flask's commands with one line, not a traceback
# (the gunicorn master and `make run` check the same table first: digits/config.py).
@exit_on_bad_setting()
def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    config.load(app, test_config)
    add_services(app)
    add_wsgi_layers(app)
    add_request_hooks(app)
    add_blueprints(app)
    errors.init_app(app)
    add_commands(app)
    return app


def add_services(app: Flask) -> None:
    """Storage, the records database, and the nets served by LiteRT (loaded on first use, kept
    current by a thread)."""
    app.extensions["storage"] = app.config.get("STORAGE") or open_storage(
        app.config["STORAGE_URL"],
        app.config["AWS_ENDPOINT_URL"],
        addons.credentials_for(app.config),  # a storage add-on's keys, when it is STORAGE_URL's
    )
    db.init_app(app)  # the embedded SQLite database is made and migrated here
    malloc.keep_buffers()  # each drawing's 160 kB buffers: reused, not mmapped afresh
    app.extensions["models"] = service_for(app.config, app.extensions["storage"])


def add_wsgi_layers(app: Flask) -> None:
    """The WSGI layers around Flask, outermost first: a request passes them in this order."""
    layers = [
        security.proxy_fix,  # the client's address and scheme, from TRUSTED_PROXY_HOPS proxies
        bodies.size_chunked,  # a chunked body gets a length, so that the size check sees it
        public.layer,  # public reads hold at most PUBLIC_READS threads; more are refused, 503
        fastpath.layer,  # answers a plain POST /api/predict itself (FAST_PREDICT)
    ]
    for layer in reversed(layers):
        app.wsgi_app = layer(app, app.wsgi_app)


def add_request_hooks(app: Flask) -> None:
    """Flask's hooks on every request, in order: the log first (it times everything), then
    CORS, the rate limits and the security headers. Each blueprint then checks its bodies."""
    logs.init_app(app)
    security.init_app(app)


def add_blueprints(app: Flask) -> None:
    app.register_blueprint(api.bp)  # the public JSON API
    app.register_blueprint(admin.bp)  # export, delete and rollback, behind ADMIN_TOKEN
    app.register_blueprint(pages.bp)  # the HTML pages


def add_commands(app: Flask) -> None:
    """flask dataset|train|evaluate|trainer|exports|models|db|retention (TensorFlow loads only
    when one runs), and release, Heroku's release phase (digits/cli_release.py)."""
    commands = (dataset_group, train_command, evaluate_command, trainer_command, exports_command)
    for command in (*commands, models_group, db_group, retention_command, release_command):
        app.cli.add_command(command)
