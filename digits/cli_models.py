"""`flask --app main models list|rollback|pin|prune`: see and move the versions the nets serve,
pin the ones to keep, delete the ones past KEEP_VERSIONS (digits/lifecycle.py)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from digits import db, lifecycle, registry
from digits.cli_errors import storage_errors
from digits.model import BadModel
from digits.nets import NETS

models_group = AppGroup("models", help="List, roll back, pin or prune model versions.")


def _storage():
    return current_app.extensions["storage"]


def _accuracy(card: dict) -> str:
    accuracy = card.get("mnist_test_accuracy")
    return f"{accuracy:.4f}" if isinstance(accuracy, int | float) else "-"


def _engine():
    return db.engine_of(current_app)


@models_group.command("list")
@storage_errors
def list_command() -> None:
    """Every version of each net (from the database); * marks the one served."""
    listed = lifecycle.listed(_storage(), _engine(), current_app.config["MODELS_DIR"], None)
    rows = [("", "net", "version", "created", "mnist acc", "")]
    for net in NETS:
        for entry in listed[net]:
            mark = "*" if entry["current"] else ""
            created, pinned = entry["created"] or "-", "pinned" if entry["pinned"] else ""
            accuracy = _accuracy(entry["metrics"])
            rows.append((mark, net, entry["version"], created, accuracy, pinned))
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


@models_group.command("pin")
@click.argument("net", type=click.Choice(NETS))
@click.argument("version")
@click.option("--unpin", is_flag=True, help="Let the version be pruned again.")
@storage_errors
def pin_command(net: str, version: str, unpin: bool) -> None:
    """Keep VERSION of NET whatever KEEP_VERSIONS says (or, with --unpin, stop keeping it)."""
    if version == registry.ORIGINAL:
        raise click.ClickException("the original is always kept: it ships with the app")
    try:
        lifecycle.pin(_storage(), _engine(), net, version, not unpin, by="cli")
    except registry.NotFound:
        raise click.ClickException(f"{net} has no version {version!r}") from None
    click.echo(f"{net} {version}: {'unpinned' if unpin else 'pinned'}")


@models_group.command("prune")
@click.option("--apply", is_flag=True, help="Delete; without it, only say what would go.")
@storage_errors
def prune_command(apply: bool) -> None:
    """Delete the versions not kept: kept are the original, the served, the newest
    KEEP_VERSIONS and the pinned ones of each net."""
    keep = current_app.config["KEEP_VERSIONS"]
    for net in NETS:
        done = lifecycle.prune(_storage(), _engine(), net, keep, apply=apply)
        verb = "deleted" if apply else "would delete"
        click.echo(f"{net}: keeps {len(done.kept)}, {verb} {len(done.deleted)}")
        for version in done.deleted:
            click.echo(f"  {verb} {version}")
        for version in done.spared:
            click.echo(f"  kept {version}: served or pinned meanwhile")
        for version in done.leftovers:
            click.echo(f"  {verb} the unfinished files of {version}")
    if not apply:
        click.echo("run with --apply to delete them")
