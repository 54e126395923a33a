"""What every command-line entry point shares: a storage failure, or a STORAGE_URL that cannot
be used, ends it with one clear line, not a traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import click

from digits.storage import Storage, StorageUnavailable, open_storage


def storage_errors(command: Callable) -> Callable:
    """Turn StorageUnavailable into click's `Error: …` and exit code 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StorageUnavailable as e:
            raise click.ClickException(f"storage is unavailable: {e}") from None

    return run


def open_storage_or_exit(url: str, endpoint_url: str | None = None) -> Storage:
    """open_storage, but a malformed STORAGE_URL ends the process with `Error: …` and exit code 1.

    create_app opens storage while flask loads the app for a command, before click can turn an
    error into one line, and flask prints a traceback for anything but SystemExit.
    """
    try:
        return open_storage(url, endpoint_url)
    except ValueError as e:
        raise SystemExit(f"Error: {e}") from None


def check_storage_url() -> None:
    """The same line, before any process starts: in the gunicorn master (a worker that exits
    is started again, for ever) and in `python -m digits.local` (once, not once per child)."""
    if os.environ.get("STORAGE_URL"):  # unset or empty: create_app's default folder
        open_storage_or_exit(os.environ["STORAGE_URL"])
