"""`flask --app main db …`: the records database's schema, and its rebuild from storage."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from digits import db
from digits.cli_errors import storage_errors

db_group = AppGroup("db", help="The records database (DATABASE_URL; SQLite in instance/ if unset).")


def engine():
    return db.engine_of(current_app)


@db_group.command("upgrade")
@storage_errors
def upgrade_command() -> None:
    """Apply the migrations the database lacks (Heroku's release phase runs this)."""
    db.upgrade(engine())
    click.echo(f"database {engine().url.render_as_string()} at revision {db.revision(engine())}")


@db_group.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask before replacing the records.")
@storage_errors
def rebuild_command(yes: bool) -> None:
    """Make the records again from storage alone (feedback, the dataset's index, the trainer's
    progress, the model versions' cards), replacing what the tables hold: a move onto the
    database, or a lost one."""
    from digits import rebuild

    storage = current_app.extensions["storage"]
    if not yes:
        click.confirm(f"Replace every record with what {storage.url} holds?", abort=True)
    db.upgrade(engine())
    rebuild.rebuild(storage, engine(), say=click.echo)
    click.echo("rebuilt")
