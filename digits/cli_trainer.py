"""`flask --app main trainer [--once]`: learn pending feedback, publish safe versions.

TensorFlow is imported only when the command runs, so `import main` stays light for the web.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from digits.cli_errors import storage_errors
from digits.nets import NETS


def finite(ctx, param, value: float | None) -> float | None:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


@click.command("trainer")
@click.option("--once", is_flag=True, help="Learn what is pending, publish, and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    callback=finite,
    help="Seconds between polls.",
)
@click.option(
    "--margin",
    type=click.FloatRange(min=0),
    default=None,
    callback=finite,
    help="Allowed MNIST test drop, in pp.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=finite,
    help="Adam learning rate.",
)
@with_appcontext
@storage_errors
def trainer_command(
    once: bool, interval: float, margin: float | None, learning_rate: float | None
) -> None:
    """Fine-tune both nets on new corrections; publish only candidates that pass the gate."""
    if not once:
        start_exports()
    require_mnist_on_a_dyno()  # before TensorFlow's import: a missing slug file fails at once
    from digits.cli_train import quiet_tensorflow

    # Before TensorFlow's import: it adds a handler of its own (each line twice) unless the
    # root logger has one.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiet_tensorflow()
    from digits import learner  # imports TensorFlow

    settings = trainer_settings(margin, learning_rate)
    where = learner.pass_arguments(current_app)
    reference = learner.load_reference()
    click.echo(f"trainer: storage {where[0].url}, margin {settings.margin_mnist * 100:.2f} pp")
    report = reporter()
    if once:
        outcomes = learner.learn_pending(*where, reference, settings, report=report)
        prune_versions(*where[:2], published(outcomes))
        return
    pruned, started = float("-inf"), True
    while True:
        try:
            if started:  # every net once: versions (and rows) from before this trainer
                prune_versions(*where[:2], NETS)
                started = False
            outcomes = learner.learn_pending(*where, reference, settings, report=report)
            prune_versions(*where[:2], published(outcomes))
            pruned = prune_predictions(where[0], pruned)
        except Exception:  # storage down, a bad record...: log it, keep serving the loop
            logging.getLogger("digits.trainer").exception("trainer: update failed; will retry")
        time.sleep(interval)


def start_exports() -> threading.Event:
    """The export thread: dataset exports the admin API queued are built beside the learning,
    never behind a training pass (digits/exports.py). Returns the event that stops it."""
    from digits import db, exports

    return exports.start_thread(db.engine_of(current_app), current_app.extensions["storage"])


def require_mnist_on_a_dyno() -> None:
    """On Heroku MNIST comes with the slug (bin/post_compile). Fetching it at boot instead would
    make every start of the trainer (dynos restart daily) depend on a package registry."""
    from digits import mnist

    if os.environ.get("DYNO") and not mnist.present():
        raise click.ClickException(
            f"MNIST is not in the slug ({mnist.DEFAULT_CACHE_DIR}): bin/post_compile puts it "
            "there at build time; redeploy, and check the build log for that step"
        )


PRUNE_SECONDS = 3600.0


def prune_predictions(storage, last: float) -> float:
    """On a local folder, delete predictions past PREDICTION_RETENTION, once an hour (on S3 the
    bucket's lifecycle rule does it: `flask retention --apply`). Returns when it last ran."""
    from digits import retention
    from digits.storage import LocalStorage

    if not isinstance(storage, LocalStorage) or time.monotonic() - last < PRUNE_SECONDS:
        return last
    gone = retention.prune(storage, current_app.config["PREDICTION_RETENTION"])
    if gone:
        logging.getLogger("digits.trainer").info("trainer: %d prediction batches expired", gone)
    return time.monotonic()


def published(outcomes) -> list[str]:
    return [outcome.net for outcome in outcomes if outcome.status == "published"]


def prune_versions(storage, engine, nets) -> None:
    """Delete these nets' versions that are not kept (KEEP_VERSIONS; digits/lifecycle.py)."""
    from digits import lifecycle

    for net in nets:
        done = lifecycle.prune(storage, engine, net, current_app.config["KEEP_VERSIONS"])
        if done.deleted:
            click.echo(f"trainer: {net}: deleted {len(done.deleted)} old versions")


def trainer_settings(margin: float | None, learning_rate: float | None):
    """Settings from the table (TRAINER_MIN_NEW, TRAINER_MAX_WAIT), app.config["TRAINER"] (a
    dict, for tests), then the command-line options."""
    from digits.learner import Settings

    config = current_app.config
    chosen = {"min_new": config["TRAINER_MIN_NEW"], "max_wait": config["TRAINER_MAX_WAIT"]}
    settings = Settings(**(chosen | config.get("TRAINER", {})))
    if margin is not None:
        settings.margin_mnist = margin / 100
    if learning_rate is not None:
        settings.learning_rate = {"fnn": learning_rate, "cnn": learning_rate}
    return settings


def reporter():
    """report(), saying a net's "waiting" line only when it changes: the loop polls every few
    seconds, and a net may wait for a day."""
    said: dict[str, str] = {}

    def report_once(outcome) -> None:
        if outcome.status == "waiting" and said.get(outcome.net) == outcome.reason:
            return
        said[outcome.net] = outcome.reason if outcome.status == "waiting" else ""
        report(outcome)

    return report_once


def report(outcome) -> None:
    if outcome.status == "nothing to learn":
        return
    line = f"trainer: {outcome.net}"
    if outcome.candidate:
        line += f" candidate {outcome.candidate}"
    line += f" {outcome.status}"
    if outcome.version:
        line += f" {outcome.version}"
    if outcome.base:
        line += f", trained from {outcome.base}"
    if outcome.reason:
        line += f": {outcome.reason}"
    if outcome.metrics:
        line += f" (MNIST test {outcome.metrics['mnist_test_accuracy']:.4f})"
    click.echo(line)
