"""`flask --app main release`: Heroku's release phase (the Procfile's `release:` line).

Heroku runs it once per deploy, after the build and before the new release's dynos start; if it
exits non-zero the deploy stops and the running release keeps serving. So a config that cannot
work (a malformed setting, a bucket that does not exist, keys without a permission the app
needs) fails the deploy here, with one `Error: …` line, instead of crashing dynos afterwards.
Then, once the records database's `flask db upgrade` exists, it runs here too: after the checks,
so a broken config never migrates, and before any dyno of the new release serves.
"""

from __future__ import annotations

import os
import uuid

import click
from flask import current_app
from flask.cli import with_appcontext

from digits.cli_errors import storage_errors
from digits.config import check_settings
from digits.storage import LocalStorage, Storage

PROBE_PREFIX = "release-check/"


@click.command("release")
@with_appcontext
@storage_errors
def release_command() -> None:
    """Check the settings and that storage answers; exit 1 (and so stop a deploy) if not."""
    check_settings()  # create_app has read them too: the same `Error: …` line either way
    storage = current_app.extensions["storage"]
    refuse_a_folder_on_a_dyno(storage)
    probe(storage)
    click.echo(f"release: settings ok; storage {storage.url} answers (put, get, list, delete)")
    upgrade_database()


def upgrade_database() -> None:
    """`flask db upgrade`, when the app has that command (the records database's migrations)."""
    database = current_app.cli.commands.get("db")
    upgrade = getattr(database, "commands", {}).get("upgrade")
    if upgrade is not None:
        click.get_current_context().invoke(upgrade)
        click.echo("release: database upgraded")


def refuse_a_folder_on_a_dyno(storage: Storage) -> None:
    """Dynos share no disk and lose theirs at every restart: a folder there loses every save."""
    if os.environ.get("DYNO") and isinstance(storage, LocalStorage):
        raise click.ClickException(
            f"STORAGE_URL is a folder on this dyno ({storage.url}): Heroku's dynos share no "
            "disk and lose it at every restart; set STORAGE_URL=s3://bucket/prefix"
        )


def probe(storage: Storage) -> None:
    """Write, read, list and delete one small object: every permission the app uses.

    A key of its own under `release-check/`, which nothing else reads or lists. If the
    delete fails the probe is left behind, and the error says so.
    """
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    data = b"digits release check\n"
    storage.put(key, data, if_none_match=True)
    if storage.get(key).data != data:
        raise click.ClickException(f"storage returned other bytes for {key} than were written")
    if key not in storage.list(PROBE_PREFIX):
        raise click.ClickException(f"storage does not list {key}, just written")
    storage.delete(key)
