"""What every command-line entry point shares: a storage failure, or a setting that cannot be
used, ends it with one clear line, not a traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import click

from digits import security, settings
from digits.storage import StorageUnavailable, open_storage


def storage_errors(command: Callable) -> Callable:
    """Turn StorageUnavailable into click's `Error: …` and exit code 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StorageUnavailable as e:
            raise click.ClickException(f"storage is unavailable: {e}") from None

    return run


# Each setting create_app reads from the environment that can be malformed, and the function
# that reads it there (AWS_ENDPOINT_URL, MODELS_DIR and ADMIN_TOKEN take any text).
SETTING_READERS = {
    "STORAGE_URL": lambda name, value: open_storage(value),
    "CORS_ORIGINS": security.parse_origins,
    "RATE_LIMIT_SAVES": security.parse_rate,
    "RATE_LIMIT_FEEDBACK": security.parse_rate,
    "TRUSTED_PROXY_HOPS": settings.whole_number,
    "LOG_REQUESTS": settings.on_off,
    "MODEL_POLL_SECONDS": settings.seconds,
    "MODEL_WATCH": settings.on_off,
    "FAST_PREDICT": settings.on_off,
}


@settings.exit_on_bad_setting()
def check_settings() -> None:
    """create_app's line for a malformed setting, before any process starts: in the gunicorn
    master (a worker that exits is started again, for ever) and in `python -m digits.local`
    (once, not once per child)."""
    for name, read in SETTING_READERS.items():
        if os.environ.get(name):  # unset or empty: create_app's default
            read(name, os.environ[name])
