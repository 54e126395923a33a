"""Storage from Heroku's add-ons: Bucketeer's and Cloudcube's own config vars, read directly."""

from __future__ import annotations

import boto3
import pytest

from digits import addons
from digits.settings import BadSetting
from tests.helpers import new_app

BUCKETEER_ENV = {
    "BUCKETEER_BUCKET_NAME": "digits-test",
    "BUCKETEER_AWS_ACCESS_KEY_ID": "bucketeer-key",
    "BUCKETEER_AWS_SECRET_ACCESS_KEY": "bucketeer-secret",
    "BUCKETEER_AWS_REGION": "eu-west-1",
}
CLOUDCUBE_ENV = {
    "CLOUDCUBE_URL": "https://digits-test.s3.amazonaws.com/cube42",
    "CLOUDCUBE_ACCESS_KEY_ID": "cloudcube-key",
    "CLOUDCUBE_SECRET_ACCESS_KEY": "cloudcube-secret",
}


def test_bucketeer_is_its_whole_bucket_with_its_keys_and_region():
    found = addons.attached(BUCKETEER_ENV)
    assert found.name == "Bucketeer" and found.url == "s3://digits-test"
    assert found.credentials() == {
        "aws_access_key_id": "bucketeer-key",
        "aws_secret_access_key": "bucketeer-secret",
        "region_name": "eu-west-1",
    }


def test_cloudcube_is_its_cube_with_its_keys():
    found = addons.attached(CLOUDCUBE_ENV)
    assert found.name == "Cloudcube" and found.url == "s3://digits-test/cube42"
    assert found.credentials() == {
        "aws_access_key_id": "cloudcube-key",
        "aws_secret_access_key": "cloudcube-secret",
    }


def test_bucketeer_wins_over_cloudcube_and_nothing_set_is_none():
    assert addons.attached({**CLOUDCUBE_ENV, **BUCKETEER_ENV}).name == "Bucketeer"
    assert addons.attached({}) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://digits-test.s3.amazonaws.com/cube42",  # not https
        "https://digits-test.s3.amazonaws.com/",  # no cube
        "https://digits-test.s3.amazonaws.com/cube42/deeper",
        "cube42",
    ],
)
def test_a_cloudcube_url_of_another_shape_is_refused(url):
    with pytest.raises(BadSetting, match="CLOUDCUBE_URL"):
        addons.attached({**CLOUDCUBE_ENV, "CLOUDCUBE_URL": url})


@pytest.fixture
def addon_env(monkeypatch, s3_server):
    """An app environment with no STORAGE_URL and no AWS_* keys: only the add-on's."""
    for name in ("STORAGE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)

    def set_env(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_env


def bucket_keys(s3_server, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket="digits-test", Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def saves(app, drawing_url: str) -> str:
    response = app.test_client().post("/hook", json={"imageBase64": drawing_url, "digit": "8"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json["name"]


@pytest.mark.s3
def test_a_bucketeer_app_saves_into_its_bucket_with_its_keys(addon_env, s3_server, drawing_url):
    addon_env(BUCKETEER_ENV)
    app = new_app()
    storage = app.extensions["storage"]
    assert storage.url == "s3://digits-test/"
    assert storage.client._request_signer._credentials.access_key == "bucketeer-key"
    assert storage.client.meta.region_name == "eu-west-1"
    name = saves(app, drawing_url)
    assert f"drawings/8/{name}.png" in bucket_keys(s3_server, "drawings/8/")


@pytest.mark.s3
def test_a_cloudcube_app_keeps_every_object_under_its_cube(addon_env, s3_server, drawing_url):
    addon_env(CLOUDCUBE_ENV)
    app = new_app()
    storage = app.extensions["storage"]
    assert storage.url == "s3://digits-test/cube42/"
    assert storage.client._request_signer._credentials.access_key == "cloudcube-key"
    name = saves(app, drawing_url)
    assert f"cube42/drawings/8/{name}.png" in bucket_keys(s3_server, "cube42/")


@pytest.mark.s3
def test_a_storage_url_that_is_set_wins_over_an_addon(addon_env, monkeypatch):
    addon_env(BUCKETEER_ENV)
    monkeypatch.setenv("STORAGE_URL", "s3://digits-test/mine")
    storage = new_app().extensions["storage"]
    assert storage.url == "s3://digits-test/mine/"
    assert storage.credentials == {}  # boto3's own: AWS_ACCESS_KEY_ID and the rest


@pytest.mark.s3
def test_the_release_phase_checks_the_addons_storage(addon_env, monkeypatch):
    addon_env(CLOUDCUBE_ENV)
    monkeypatch.setenv("DYNO", "release.3")
    result = new_app().test_cli_runner().invoke(args=["release"])
    assert result.exit_code == 0, result.output
    assert "s3://digits-test/cube42/ answers" in result.output
