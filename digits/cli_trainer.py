"""`flask --app main trainer [--once]`: learn pending feedback, publish safe versions.

TensorFlow is imported only when the command runs, so `import main` stays light for the web.
"""

from __future__ import annotations

import logging
import math
import os
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from digits.cli_errors import storage_errors


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
    require_mnist_on_a_dyno()  # before TensorFlow's import: a missing slug file fails at once
    from digits import malloc
    from digits.cli_train import quiet_tensorflow

    malloc.for_training()  # before TensorFlow's threads: see digits/malloc.py

    # Before TensorFlow's import: it adds a handler of its own (each line twice) unless the
    # root logger has one.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiet_tensorflow()
    from digits import learner  # imports TensorFlow

    settings = trainer_settings(margin, learning_rate)
    where = learner.pass_arguments(current_app)
    reference = learner.load_reference()
    click.echo(f"trainer: storage {where[0].url}, margin {settings.margin_mnist * 100:.2f} pp")
    if once:
        learner.learn_pending(*where, reference, settings, report=report)
        return
    pruned = float("-inf")
    while True:
        try:
            learner.learn_pending(*where, reference, settings, report=report)
            pruned = prune_predictions(where[0], pruned)
        except Exception:  # storage down, a bad record...: log it, keep serving the loop
            logging.getLogger("digits.trainer").exception("trainer: update failed; will retry")
        time.sleep(interval)


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


def trainer_settings(margin: float | None, learning_rate: float | None):
    """Settings from app.config["TRAINER"] (a dict), then the command-line options."""
    from digits.learner import Settings

    settings = Settings(**current_app.config.get("TRAINER", {}))
    if margin is not None:
        settings.margin_mnist = margin / 100
    if learning_rate is not None:
        settings.learning_rate = {"fnn": learning_rate, "cnn": learning_rate}
    return settings


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
