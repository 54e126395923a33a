"""`flask --app main models list|rollback`: see and move the versions the nets serve."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from digits import registry
from digits.cli_errors import storage_errors
from digits.model import BadModel
from digits.nets import NETS

models_group = AppGroup("models", help="List model versions, or roll a net back.")


def _storage():
    return current_app.extensions["storage"]


def _accuracy(card: dict) -> str:
    accuracy = card.get("mnist_test_accuracy")
    return f"{accuracy:.4f}" if isinstance(accuracy, int | float) else "-"


@models_group.command("list")
@storage_errors
def list_command() -> None:
    """Every version of each net; * marks the one served."""
    storage, models_dir = _storage(), current_app.config["MODELS_DIR"]
    rows = [("", "net", "version", "created", "mnist acc")]
    for net in NETS:
        for entry in registry.versions(storage, net, models_dir):
            mark = "*" if entry["current"] else ""
            created = entry["created"] or "-"
            rows.append((mark, net, entry["version"], created, _accuracy(entry["metrics"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def nets_having(version: str) -> list[str]:
    """The nets a version belongs to; "original" belongs to every net."""
    if version == registry.ORIGINAL:
        return list(NETS)
    return [net for net in NETS if version in registry.published(_storage(), net)]


@models_group.command("rollback")
@click.argument("version")
@click.option("--net", type=click.Choice(NETS), help="Default: the net(s) with VERSION.")
@storage_errors
def rollback_command(version: str, net: str | None) -> None:
    """Point a net back at VERSION (a published version, or "original")."""
    nets = [net] if net else nets_having(version)
    if not nets:
        raise click.ClickException(f"no net has a version {version!r}")
    for name in nets:
        try:
            pointer = registry.rollback(_storage(), name, version, by="cli")
        except registry.NotFound:
            raise click.ClickException(f"{name} has no version {version!r}") from None
        except BadModel as e:
            raise click.ClickException(f"{e}; not rolled back") from None
        click.echo(f"{name}: now serving {pointer[name]} (workers follow within seconds)")
