"""What every command-line command shares: a storage failure ends it with one clear line, not a
traceback (a setting that cannot be used does the same: digits/config.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from digits.storage import StorageUnavailable


def storage_errors(command: Callable) -> Callable:
    """Turn StorageUnavailable into click's `Error: …` and exit code 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StorageUnavailable as e:
            raise click.ClickException(f"storage is unavailable: {e}") from None

    return run
