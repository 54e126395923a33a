"""A browser posting for another site is refused (403, nothing stored); other clients are not."""

from __future__ import annotations

import pytest

from tests.helpers import new_app, stored_files

EVIL = "https://evil.example"


def refused(response) -> bool:
    return response.status_code == 403 and "another site" in response.json["error"]


def test_a_plain_form_post_from_another_site_is_refused_and_stores_nothing(
    client, storage_dir, drawing_url
):
    """The attack CORS cannot stop: a form needs no preflight."""
    form = {"imageBase64": drawing_url, "digit": "7"}
    response = client.post("/hook", data=form, headers={"Origin": EVIL})
    assert refused(response), response.get_data(as_text=True)
    assert EVIL in response.json["error"] and "nothing was stored" in response.json["error"]
    assert stored_files(storage_dir) == []


@pytest.mark.parametrize("path", ["/hook", "/api/predict", "/api/feedback"])
def test_json_from_another_site_is_refused_on_every_route_that_stores(
    client, storage_dir, drawing_url, path
):
    """/api/predict included: its fast path leaves such a request to Flask, which refuses it."""
    body = {"imageBase64": drawing_url, "digit": "3", "id": "p1", "consent": True}
    response = client.post(path, json=body, headers={"Origin": EVIL})
    assert refused(response)
    assert stored_files(storage_dir) == []


def test_sec_fetch_site_cross_site_without_origin_is_refused(client, storage_dir, drawing_url):
    headers = {"Sec-Fetch-Site": "cross-site"}
    response = client.post(
        "/hook", json={"imageBase64": drawing_url, "digit": "1"}, headers=headers
    )
    assert refused(response)
    assert stored_files(storage_dir) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts: neither header
        {"Origin": "http://localhost"},  # this site (the test client's host)
        {"Origin": "HTTP://LOCALHOST:80/"},  # the same, as some clients write it
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_this_site_and_clients_without_the_headers_may_save(client, drawing_url, headers):
    response = client.post(
        "/hook", json={"imageBase64": drawing_url, "digit": "4"}, headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_the_scheme_counts_behind_a_proxy(storage_dir, drawing_url, monkeypatch):
    """On Heroku the page is https: the router's X-Forwarded-Proto makes the origin match."""
    monkeypatch.setenv("DYNO", "web.1")
    app = new_app(storage_dir)
    headers = {"Origin": "https://digits.example", "X-Forwarded-Proto": "https"}
    body = {"imageBase64": drawing_url, "digit": "5"}
    base = "http://digits.example"
    response = app.test_client().post("/hook", json=body, headers=headers, base_url=base)
    assert response.status_code == 201
    headers["Origin"] = "http://digits.example"  # a plain-http page is another origin
    response = app.test_client().post("/hook", json=body, headers=headers, base_url=base)
    assert refused(response)


def test_an_origin_in_cors_origins_may_save(storage_dir, drawing_url):
    app = new_app(storage_dir, CORS_ORIGINS=EVIL)
    body = {"imageBase64": drawing_url, "digit": "2"}
    headers = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    response = app.test_client().post("/hook", json=body, headers=headers)
    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == EVIL


def test_reads_from_another_site_are_not_refused_here(client):
    """CORS decides what another site may read; this check is about changes."""
    assert client.get("/healthz", headers={"Origin": EVIL}).status_code == 200


def test_a_refusal_spends_no_rate_limit_token(storage_dir, drawing_url):
    app = new_app(storage_dir, RATE_LIMIT_SAVES="1/hour")
    client = app.test_client()
    body = {"imageBase64": drawing_url, "digit": "6"}
    assert refused(client.post("/hook", json=body, headers={"Origin": EVIL}))
    assert client.post("/hook", json=body).status_code == 201
