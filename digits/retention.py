"""How long predictions are kept: PREDICTION_RETENTION days (7 by default), then deleted.

A prediction's record holds the drawing, so that an answer given with consent can keep it (the
feedback record copies what it needs). One that got no such answer is data nobody gave us, and
goes after the retention. Predictions are stored in batches by day (`predictions/<YYYY-MM-DD>/`,
digits/predictions.py), so a whole day's folder expires at once:
- on S3, by a bucket lifecycle rule on the prefix (`flask --app main retention --apply`);
- on a local folder, by the trainer's pass (`prune`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from digits.storage import S3Storage, Storage

PREFIX = "predictions/"
DEFAULT_DAYS = 7
RULE_ID = "digits-prediction-retention"
_DAY = re.compile(r"predictions/(\d{4}-\d{2}-\d{2})/", re.ASCII)


def expired(key: str, days: int, today: date) -> bool:
    """Whether a prediction key's day is more than `days` days before `today`."""
    match = _DAY.match(key)
    if match is None:
        return False
    return date.fromisoformat(match.group(1)) < today - timedelta(days=days)


def prune(storage: Storage, days: int, now: datetime | None = None) -> int:
    """Delete the prediction batches of the days past the retention; return how many."""
    today = (now or datetime.now(UTC)).date()
    gone = 0
    for key in storage.list(PREFIX):
        if expired(key, days, today):
            storage.delete(key)
            gone += 1
    return gone


def lifecycle_rule(storage: S3Storage, days: int) -> dict:
    """S3's rule: objects under the predictions prefix expire `days` days after their creation
    (S3 counts from midnight UTC after it, a day later at most than `prune`)."""
    return {
        "ID": RULE_ID,
        "Filter": {"Prefix": storage.prefix + PREFIX},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def apply_lifecycle(storage: S3Storage, days: int) -> dict:
    """Put our rule in the bucket's lifecycle configuration, keeping every other rule."""
    from botocore.exceptions import ClientError

    client = storage.client
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    rule = lifecycle_rule(storage, days)
    rules = [r for r in rules if r.get("ID") != RULE_ID] + [rule]
    client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": rules}
    )
    return rule
