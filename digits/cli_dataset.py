"""`flask --app main dataset …`: look at and export the collected drawings."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from digits import db, exports, records
from digits.cli_errors import storage_errors

dataset_group = AppGroup("dataset", help="Inspect and export the collected drawings.")


@dataset_group.command("stats")
@storage_errors
def stats_command() -> None:
    """Print how many drawings there are per label (the database's counts, as the API's)."""
    # Counting by listing storage read two objects a drawing: minutes at 50k drawings on S3.
    engine = db.engine_of(current_app)
    with db.reading(engine) as conn:
        tally = records.counts(conn)
    click.echo(f"database: {engine.url.render_as_string(hide_password=True)}")
    click.echo("label  count")
    for label, count in tally.items():
        click.echo(f"{label:>5}  {count:>5}")
    click.echo(f"total  {sum(tally.values()):>5}")


@dataset_group.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@storage_errors
def export_command(out: Path) -> None:
    """Write every drawing as PNG plus labels.csv into the zip file OUT (the drawings the
    database's index names, as the admin API's exports)."""
    if not out.parent.is_dir():
        raise click.ClickException(f"no folder {out.parent} to write {out.name} in")
    # As an export job builds it: names from the database's index, a chunk at a time. Listing
    # storage (two objects a drawing, a thousand keys a request on S3) to count, then again to
    # write, with every name in memory, is what made this slow at 50k drawings.
    storage, engine = current_app.extensions["storage"], db.engine_of(current_app)
    total = exports.drawing_count(engine)
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as f, click.progressbar(length=total, label="exporting") as bar:
        count = exports.write(engine, storage, f, lambda: bar.update(1))
    tmp.replace(out)  # a half-written zip never carries the final name
    click.echo(f"wrote {count} drawings to {out}")
