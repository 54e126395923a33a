"""Storage from a Heroku add-on's own config vars: Bucketeer or Cloudcube.

Each add-on sets variables of its own when it is attached (and changes them when it rotates its
keys). Read directly, nothing has to be copied into STORAGE_URL and AWS_* by hand, where it could
go stale. A STORAGE_URL that is set wins over both; Bucketeer wins over Cloudcube.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from digits.settings import BadSetting

# Every variable the two add-ons set, for the settings table (digits/config.py).
BUCKETEER = (
    "BUCKETEER_BUCKET_NAME",
    "BUCKETEER_AWS_ACCESS_KEY_ID",
    "BUCKETEER_AWS_SECRET_ACCESS_KEY",
    "BUCKETEER_AWS_REGION",
)
CLOUDCUBE = ("CLOUDCUBE_URL", "CLOUDCUBE_ACCESS_KEY_ID", "CLOUDCUBE_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class AddonStorage:
    """Where an add-on's objects go, and the keys and region to reach them with."""

    name: str  # "Bucketeer" or "Cloudcube"
    url: str  # s3://bucket/prefix
    access_key_id: str | None
    secret_access_key: str | None
    region: str | None = None  # None: boto3's own (AWS_DEFAULT_REGION, or its default)

    def credentials(self) -> dict[str, str]:
        """Keyword arguments for boto3.client: only what the add-on set."""
        given = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": self.region,
        }
        return {name: value for name, value in given.items() if value}


def bucketeer(settings: Mapping[str, object]) -> AddonStorage | None:
    """The whole bucket: Bucketeer gives each app one of its own."""
    bucket = settings.get("BUCKETEER_BUCKET_NAME")
    if not bucket:
        return None
    return AddonStorage(
        "Bucketeer",
        f"s3://{bucket}",
        settings.get("BUCKETEER_AWS_ACCESS_KEY_ID"),
        settings.get("BUCKETEER_AWS_SECRET_ACCESS_KEY"),
        settings.get("BUCKETEER_AWS_REGION"),
    )


def cloudcube(settings: Mapping[str, object]) -> AddonStorage | None:
    """The cube: CLOUDCUBE_URL is https://BUCKET.s3.amazonaws.com/CUBE, and the add-on's keys
    may touch only objects under CUBE/ (those under CUBE/public/ are public; ours are not)."""
    url = settings.get("CLOUDCUBE_URL")
    if not url:
        return None
    parsed = urlparse(str(url))
    bucket = (parsed.hostname or "").split(".", 1)[0]
    cube = parsed.path.strip("/")
    if parsed.scheme != "https" or not bucket or not cube or "/" in cube:
        raise BadSetting(f"CLOUDCUBE_URL={url!r}: use https://BUCKET.s3.amazonaws.com/CUBE")
    return AddonStorage(
        "Cloudcube",
        f"s3://{bucket}/{cube}",
        settings.get("CLOUDCUBE_ACCESS_KEY_ID"),
        settings.get("CLOUDCUBE_SECRET_ACCESS_KEY"),
    )


def attached(settings: Mapping[str, object]) -> AddonStorage | None:
    """The storage add-on whose variables are set, if any (Bucketeer first)."""
    return bucketeer(settings) or cloudcube(settings)


def credentials_for(settings: Mapping[str, object]) -> dict[str, str] | None:
    """The add-on's keys and region, when STORAGE_URL is that add-on's storage; else None
    (boto3's own: AWS_ACCESS_KEY_ID, ...)."""
    addon = attached(settings)
    if addon is None or settings.get("STORAGE_URL") != addon.url:
        return None
    return addon.credentials()


def check_cloudcube_url(name: str, value: object) -> str | None:
    """CLOUDCUBE_URL's parser in the settings table: the URL itself (None when unset), or
    BadSetting for one of another shape."""
    if value is None or value == "":
        return None
    cloudcube({"CLOUDCUBE_URL": value})
    return str(value)
