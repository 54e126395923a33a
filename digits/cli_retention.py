"""`flask --app main retention [--apply]`: how long predictions are kept, and S3's rule for it."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from digits import retention
from digits.cli_errors import storage_errors
from digits.storage import S3Storage


@click.command("retention")
@click.option("--apply", is_flag=True, help="On S3: put the lifecycle rule in the bucket.")
@with_appcontext
@storage_errors
def retention_command(apply: bool) -> None:
    """Show (or, on S3, apply) the rule that deletes predictions after PREDICTION_RETENTION days."""
    storage = current_app.extensions["storage"]
    days = int(current_app.config.get("PREDICTION_RETENTION", retention.DEFAULT_DAYS))
    if not isinstance(storage, S3Storage):
        click.echo(f"{storage.url}: the trainer's pass deletes predictions after {days} days")
        return
    if not apply:
        rule = retention.lifecycle_rule(storage, days)
        click.echo(json.dumps(rule, indent=2))
        click.echo("run with --apply to put this rule in the bucket's lifecycle configuration")
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        rule = retention.apply_lifecycle(storage, days)
    except (BotoCoreError, ClientError) as e:  # no permission for the bucket's lifecycle, say
        raise click.ClickException(f"the lifecycle rule was not applied: {e}") from None
    where = f"s3://{storage.bucket}/{rule['Filter']['Prefix']}"
    click.echo(f"{where}: predictions expire {days} days after they were made")
