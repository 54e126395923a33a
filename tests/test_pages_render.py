"""Server-rendered pages (no browser needed): model cards, preprocessing pictures, errors."""

from __future__ import annotations

import json

import pytest

from digits import registry
from tests.helpers import FIXTURES

FNN_CARD = {
    "net": "fnn",
    "version": "v3",
    "params": 118282,
    "layers": [
        {"name": "flatten", "type": "Flatten", "output_shape": [None, 784], "params": 0},
        {"name": "conv", "type": "Conv2D", "output_shape": [None, 28, 28, 32], "params": 320},
        {"name": "output", "type": "Dense", "output_shape": [None, 10], "params": 1290},
    ],
    "mnist_test_accuracy": 0.9791,
    "user_heldout_accuracy": None,
    "per_digit_accuracy": [0.99, 0.99, 0.98, 0.97, 0.98, 0.97, 0.98, 0.97, 0.96, 0.96],
    "trained_at": "2026-11-24T06:01:00+00:00",
    "train_seconds": 41.2,
    "epochs": 8,
}


@pytest.fixture
def models_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


@pytest.fixture
def client(make_app, models_folder):
    return make_app(MODELS_DIR=str(models_folder), LOG_REQUESTS="off").test_client()


def test_pages_are_registered(app):
    """main.create_app registers the pages blueprint (digits/pages.py)."""
    assert "pages" in app.blueprints


def test_models_page_before_training(client):
    html = client.get("/models").get_data(as_text=True)
    assert html.count("Not trained yet") == 2


def test_models_page_shows_the_card(client, models_folder):
    (models_folder / "fnn.json").write_text(json.dumps(FNN_CARD))
    (models_folder / "cnn.json").write_text("{ not json")  # half-written: no crash
    response = client.get("/models")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "118,282" in html and "97.91%" in html
    assert "28 × 28 × 32" in html and "None" not in html
    assert "2026-11-24 06:01 UTC" in html and "8 epochs" in html
    assert "not enough drawings yet" in html
    assert html.count("Not trained yet") == 1


def test_models_page_shows_real_handwriting_beside_mnist(client, models_folder):
    per_digit = [1.0, 0.991, 0.99, 0.99, 0.985, 0.99, 0.99, 0.987, 1.0, 0.983]
    real = {"accuracy": 0.9912, "count": 3498, "writers": 7, "per_digit": per_digit}
    (models_folder / "fnn.json").write_text(json.dumps({**FNN_CARD, "served_real_heldout": real}))
    (models_folder / "cnn.json").write_text(json.dumps({**FNN_CARD, "net": "cnn"}))
    html = client.get("/models").get_data(as_text=True)
    assert "99.12%" in html and "3,498 drawings by 7 writers" in html
    row = html[html.index('class="real-per-digit"') :].split("</tr>")[0]
    assert [c.split("</td>")[0] for c in row.split("<td>")[1:]][:2] == ["100.0", "99.1"]
    assert html.count("not measured for this version") == 1  # the CNN's card has none


def test_models_page_shows_the_version_served_now(client, models_folder):
    (models_folder / "fnn.json").write_text(json.dumps(FNN_CARD))
    storage = client.application.extensions["storage"]
    learned = {"mnist_test_accuracy": 0.9812, "served_mnist_test_accuracy": 0.9805}
    tflite = (FIXTURES / "tiny-fnn-b.tflite").read_bytes()
    version = registry.publish(storage, "fnn", tflite, b"keras", learned)
    html = client.get("/models").get_data(as_text=True)
    assert version in html and "98.12%" in html and "98.05%" in html
    assert "97.91%" not in html  # the shipped version's measures are not this one's
    assert "118,282" in html  # fine-tuning keeps the layers
    registry.rollback(storage, "fnn", "original", by="test")
    assert "97.91%" in client.get("/models").get_data(as_text=True)


def test_internals_pictures_each_step(client):
    html = client.get("/internals").get_data(as_text=True)
    assert html.count('src="data:image/png;base64,') >= 4
    assert "Centred by mass" in html


def test_internals_explains_when_preprocessing_fails(client, monkeypatch):
    import digits.preprocess

    def broken(image):
        raise RuntimeError("boom")

    monkeypatch.setattr(digits.preprocess, "preprocess_steps", broken)
    response = client.get("/internals")
    assert response.status_code == 200
    assert "could not be made" in response.get_data(as_text=True)


def test_errors_are_pages_for_people_and_json_for_the_api(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404 and "text/html" in page.content_type
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.get_json()["error"]


def test_pages_have_no_inline_script_or_style(client):
    """The Content-Security-Policy allows files from this origin only."""
    for path in ("/", "/collect", "/stats", "/dataset", "/models", "/internals", "/about"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html and " onclick=" not in html, path
        assert "<script src=" in html


def test_pages_hand_the_api_urls_to_the_scripts(client):
    assert 'data-predict-url="/api/predict"' in client.get("/").get_data(as_text=True)
    collect = client.get("/collect").get_data(as_text=True)
    assert 'data-hook-url="/hook"' in collect
    assert 'data-counts-url="/api/dataset/counts"' in collect
    assert 'data-stats-url="/api/stats"' in client.get("/stats").get_data(as_text=True)
