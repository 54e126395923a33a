"""`flask --app main train` and `flask --app main evaluate`.

TensorFlow is imported inside the commands, so registering them costs the web app nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from digits.cli_errors import storage_errors
from digits.nets import NETS


@click.command("train")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: MODELS_DIR.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs for both nets (default: per net).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Use only the first N MNIST digits."
)
@click.option("--net", "nets", multiple=True, type=click.Choice(NETS), help="Repeatable.")
@with_appcontext
@storage_errors
def train_command(out: Path | None, epochs: int | None, limit: int | None, nets) -> None:
    """Train both nets from scratch on MNIST + collected drawings, save .keras and .tflite."""
    quiet_tensorflow()
    from digits import training

    out = out or Path(current_app.config["MODELS_DIR"])
    per_net = {net: epochs for net in NETS} if epochs is not None else None
    training.train_all(
        out,
        storage=current_app.extensions["storage"],
        epochs=per_net,
        limit=limit,
        nets=tuple(nets) or NETS,
        log=click.echo,
    )


@click.command("evaluate")
@click.option(
    "--models", type=click.Path(path_type=Path), default=None, help="Default: MODELS_DIR."
)
@with_appcontext
@storage_errors
def evaluate_command(models: Path | None) -> None:
    """Accuracy per net and per digit on MNIST test and the held-out drawings, with confusion."""
    quiet_tensorflow()
    from digits import training

    models = models or Path(current_app.config["MODELS_DIR"])
    training.evaluate_saved(models, storage=current_app.extensions["storage"], log=click.echo)


def quiet_tensorflow() -> None:
    """Call before TensorFlow's import: its C++ start-up notices drown our progress and logs.

    Its Python notices at INFO ("Assets written to ..." at each export) too, once the trainer
    logs at INFO; its warnings still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
