"""Every setting of the web app, in one table: where a setting comes from, and what it means.

A setting's value is, first that wins: the `test_config` given to `create_app`, the environment
variable of the same name (when set and not empty; secrets come only from there), the default
below. `load` parses each one once, with the row's parser, into the typed value modules read
from `app.config` (a rate, a list of origins, a bool, a number). A value that cannot be used
raises BadSetting, which every entry point turns into one `Error: …` line.

`check_settings` runs the same parsers over the environment alone, before any process starts:
in the gunicorn master and in `make run`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from digits import addons, db, retention, settings
from digits.security import parse_origins, parse_rate
from digits.settings import BadSetting, on_off, seconds, whole_number
from digits.storage import check_url

ROOT = Path(__file__).resolve().parent.parent
# Not a setting anyone changes: the largest request body, in bytes (werkzeug's own check).
MAX_CONTENT_LENGTH = 1024 * 1024


def text(name: str, value: object) -> str | None:
    """Free text (a path, a URL, a token): taken as it is."""
    return None if value is None else str(value)


def storage_url(name: str, value: object) -> str:
    """A folder or s3://bucket/prefix (digits/storage.py says which schemes it knows)."""
    return check_url(str(value))


@dataclass(frozen=True)
class Setting:
    name: str  # also the environment variable's name
    parse: Callable[[str, object], object]
    # The text an unset variable stands for, or a function of the app for one that depends on it.
    default: str | Callable[[Flask], object] | None
    meaning: str


def default_storage_url(app: Flask) -> str:
    """A storage add-on's bucket when one is attached (digits/addons.py), else a local folder."""
    addon = addons.attached(app.config)
    return addon.url if addon else os.path.join(app.instance_path, "storage")


# The storage add-ons' own variables, set by Heroku when one is attached. Before STORAGE_URL:
# its default reads them. Only CLOUDCUBE_URL has a shape to check.
ADDON_SETTINGS = tuple(
    Setting(name, text, None, "set by the Bucketeer add-on") for name in addons.BUCKETEER
) + tuple(
    Setting(
        name,
        addons.check_cloudcube_url if name == "CLOUDCUBE_URL" else text,
        None,
        "set by the Cloudcube add-on",
    )
    for name in addons.CLOUDCUBE
)

SETTINGS = (
    *ADDON_SETTINGS,
    Setting(
        "STORAGE_URL",
        storage_url,
        default_storage_url,
        "where drawings, feedback and model versions live: a folder or s3://bucket/prefix; "
        "unset: a storage add-on's, else instance/storage",
    ),
    Setting("AWS_ENDPOINT_URL", text, None, "another S3-compatible server than AWS (MinIO, R2…)"),
    Setting("MODELS_DIR", text, lambda app: str(ROOT / "models"), "the folder of the shipped nets"),
    Setting("ADMIN_TOKEN", text, "", "bearer token for export, delete and rollback; unset: off"),
    Setting("CORS_ORIGINS", parse_origins, "", "other sites allowed to call the API; empty: none"),
    Setting("RATE_LIMIT_SAVES", parse_rate, "30/minute", "saves (POST /hook) per client IP"),
    Setting("RATE_LIMIT_FEEDBACK", parse_rate, "60/minute", "answers per client IP"),
    Setting(
        "RATE_LIMIT_READS",
        parse_rate,
        "120/minute",
        "the API's public reads (stats, gallery pages, counts) per client IP, together",
    ),
    Setting(
        "PUBLIC_READS",
        whole_number,
        "2",
        "public reads (stats, gallery, counts, images) a worker serves at once, the rest 503; "
        "keep it under gunicorn's threads (4); 0: no bound",
    ),
    Setting(
        "TRUSTED_PROXY_HOPS",
        whole_number,
        # Heroku sets DYNO in every dyno, and there the router is always in front of us.
        lambda app: 1 if os.environ.get("DYNO") else 0,
        "proxies in front of the app that append to X-Forwarded-For",
    ),
    Setting("LOG_REQUESTS", on_off, "on", "one JSON log line per request; off silences it"),
    Setting("MODEL_POLL_SECONDS", seconds, "2", "how often each worker checks the model pointer"),
    Setting(
        "MODEL_WATCH",
        on_off,
        # The watcher runs in servers, not in tests, unless a test asks for it.
        lambda app: not app.config.get("TESTING"),
        "a thread per worker that swaps in new model versions; off stops it",
    ),
    Setting("FAST_PREDICT", on_off, "on", "plain predictions skip Flask's machinery (fastpath)"),
    Setting(
        "DATABASE_URL",
        db.check_url,
        lambda app: db.default_url(app.instance_path),
        "the records database: sqlite:///path or postgres://… (Heroku Postgres sets it)",
    ),
    Setting(
        "PREDICTION_RETENTION",
        lambda name, value: whole_number(name, value, minimum=1),
        str(retention.DEFAULT_DAYS),
        "days a prediction (and its drawing) is kept unless an answer with consent keeps it",
    ),
    # Not a version of ~10 MB for every pass with one correction in it (progress.waiting)...
    Setting(
        "TRAINER_MIN_NEW",
        lambda name, value: whole_number(name, value, minimum=1),
        "20",
        "the trainer learns (and publishes) a net once this many new corrections wait…",
    ),
    Setting(
        "TRAINER_MAX_WAIT",
        seconds,
        "86400",
        "…or once the oldest has waited this many seconds",
    ),
    # ...and not every version for ever (digits/lifecycle.py).
    Setting(
        "KEEP_VERSIONS",
        lambda name, value: whole_number(name, value, minimum=1),
        "10",
        "newest versions kept per net, besides the shipped, the served and the pinned ones",
    ),
)


def load(app: Flask, test_config: dict | None = None) -> None:
    """Put every setting's typed value in app.config (raises BadSetting for one that is bad)."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.config.update(test_config or {})
    for setting in SETTINGS:
        app.config[setting.name] = setting.parse(setting.name, raw_value(app, setting))


def raw_value(app: Flask, setting: Setting) -> object:
    given = app.config.get(setting.name)
    if given is not None:
        return given
    if os.environ.get(setting.name):  # unset or empty: the default
        return os.environ[setting.name]
    default = setting.default
    return default(app) if callable(default) else default


@settings.exit_on_bad_setting()
def check_settings() -> None:
    """create_app's line for a malformed setting, before any process starts: in the gunicorn
    master (a worker that exits is started again, for ever) and in `python -m digits.local`
    (once, not once per child)."""
    for setting in SETTINGS:
        if os.environ.get(setting.name):
            setting.parse(setting.name, os.environ[setting.name])


__all__ = ["SETTINGS", "BadSetting", "Setting", "check_settings", "load"]
