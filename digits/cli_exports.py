"""`flask --app main exports [--once]`: build the dataset exports the admin API queued.

The trainer worker runs the same loop in a thread (digits/cli_trainer.py), so a Heroku app
needs no process type of its own for it. This command runs it alone, without TensorFlow: for a
separate process, to build one export by hand, or to measure one (bench/volume.py).
"""

from __future__ import annotations

import logging
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from digits import db, exports
from digits.cli_errors import storage_errors


@click.command("exports")
@click.option("--once", is_flag=True, help="Build the queued export, if any, and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=exports.POLL_SECONDS,
    show_default=True,
    help="Seconds between polls.",
)
@with_appcontext
@storage_errors
def exports_command(once: bool, interval: float) -> None:
    """Build queued dataset exports into storage (the trainer worker does it too)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    engine, storage = db.engine_of(current_app), current_app.extensions["storage"]
    if not once:
        exports.serve(engine, storage, threading.Event(), interval)  # until the process stops
        return
    job_id = exports.run_pending(engine, storage)
    if job_id is None:
        click.echo("exports: nothing queued")
        return
    job = exports.find(engine, job_id)
    click.echo(f"exports: {job_id} {job['state']}, {job['done']} drawings")
    if job["state"] != "done":
        raise click.ClickException(f"export {job_id} is {job['state']}: {job['error']}")
