"""Predictions are deleted after PREDICTION_RETENTION days: by the trainer's pass on a local
folder, by a bucket lifecycle rule on S3."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from digits import retention
from digits.cli_retention import retention_command
from digits.storage import LocalStorage, open_storage


def test_prune_deletes_the_days_past_the_retention(tmp_path):
    storage = LocalStorage(tmp_path)
    keys = [
        "predictions/2026-11-20/p20261120T100000000000-aaaaaaaa.jsonl",
        "predictions/2026-11-22/p20261122T100000000000-bbbbbbbb.jsonl",
        "predictions/2026-11-29/p20261129T100000000000-cccccccc.jsonl",
        "feedback/p20261120T100000000000-aaaaaaaa-00000000.json",
    ]
    for key in keys:
        storage.put(key, b"{}")
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert retention.prune(storage, 7, now) == 1  # the 22nd is 7 days back: kept
    assert list(storage.list()) == sorted(keys[1:])
    assert retention.prune(storage, 7, now) == 0


def app_with(storage, days: int = 3) -> Flask:
    app = Flask(__name__)
    app.config["PREDICTION_RETENTION"] = days
    app.extensions["storage"] = storage
    app.cli.add_command(retention_command)
    return app


@pytest.mark.s3
def test_the_lifecycle_rule_is_put_beside_the_buckets_other_rules(s3_server, s3_url):
    storage = open_storage(s3_url, s3_server.endpoint)
    other = {
        "ID": "theirs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    storage.client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [other]}
    )
    runner = app_with(storage).test_cli_runner()
    shown = runner.invoke(retention_command, [])
    assert shown.exit_code == 0 and '"Days": 3' in shown.output and "--apply" in shown.output
    for _ in range(2):  # applying again replaces our rule, not adds one
        result = runner.invoke(retention_command, ["--apply"])
        assert result.exit_code == 0, result.output
    rules = storage.client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    ours = [r for r in rules if r["ID"] == retention.RULE_ID]
    assert [r["ID"] for r in rules].count("theirs") == 1 and len(ours) == 1
    assert ours[0]["Expiration"] == {"Days": 3}
    assert ours[0]["Filter"]["Prefix"] == storage.prefix + "predictions/"
    storage.client.delete_bucket_lifecycle(Bucket=storage.bucket)


def test_on_a_local_folder_the_command_says_the_trainer_prunes(tmp_path):
    result = app_with(LocalStorage(tmp_path), 7).test_cli_runner().invoke(retention_command, [])
    assert result.exit_code == 0 and "deletes predictions after 7 days" in result.output
