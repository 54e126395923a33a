"""POST /api/feedback: recorded once, atomically; nothing recorded on bad input."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import zipfile
from datetime import UTC, datetime

import pytest

from digits import bodies, dataset, db, feedback, predictions
from digits.storage import StorageError
from tests.helpers import ARABIC_INDIC, drawing_png, fake_prediction


def stored_keys(storage_dir, prefix: str) -> list[str]:
    feedback.flush()  # the dataset copy is made after the answer
    base = storage_dir / prefix
    if not base.exists():
        return []
    return sorted(p.name for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_confirmation_is_recorded_with_drawing(client, storage_dir, made):
    response = client.post("/api/feedback", json={"id": "p1", "digit": 3, "consent": True})
    assert response.status_code == 202
    assert response.json == {"recorded": True}
    record = json.loads((storage_dir / "feedback" / "p1.json").read_text())
    assert record["digit"] == 3 and record["consent"] is True
    assert record["source"] == "confirmation"
    assert record["cnn"]["digit"] == 3 and len(record["fnn"]["probabilities"]) == 10
    assert record["versions"] == {"fnn": "original", "cnn": "original"}
    assert base64.b64decode(record["image"]) == drawing_png()
    drawings = stored_keys(storage_dir, "drawings/3")
    assert len(drawings) == 2  # the PNG and its metadata
    meta = json.loads((storage_dir / "drawings" / "3" / drawings[0]).read_text())
    assert meta["source"] == "confirmation" and meta["prediction_id"] == "p1"


def test_correction_and_not_a_digit(client, storage_dir, made):
    assert (
        client.post("/api/feedback", json={"id": "p2", "digit": 7, "consent": True}).status_code
        == 202
    )
    record = feedback.load(feedback_storage(client), "p2")
    assert record["source"] == "correction"  # the FNN said 5
    assert record["correct"] == {"fnn": False, "cnn": True}
    response = client.post("/api/feedback", json={"id": "p1", "digit": None, "consent": True})
    assert response.status_code == 202
    assert len(stored_keys(storage_dir, "drawings/none")) == 2


def feedback_storage(client):
    return client.application.extensions["storage"]


def test_without_consent_no_drawing_is_kept(client, storage_dir, made):
    response = client.post("/api/feedback", json={"id": "p1", "digit": 3, "consent": False})
    assert response.status_code == 202
    record = json.loads((storage_dir / "feedback" / "p1.json").read_text())
    assert record["consent"] is False and "image" not in record
    assert stored_keys(storage_dir, "drawings") == []


def test_unknown_prediction_is_404(client, storage_dir, made):
    response = client.post("/api/feedback", json={"id": "nope", "digit": 3, "consent": True})
    assert response.status_code == 404
    response = client.post("/api/feedback", json={"id": "../x", "digit": 3, "consent": True})
    assert response.status_code == 404
    assert not storage_dir.exists() or stored_keys(storage_dir, "") == []


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
)
def test_a_form_is_refused_with_415_as_documented(client, storage_dir, made, content_type):
    """Feedback is JSON only (unlike /hook): a form has no true, false or null to send."""
    form = {"id": "p1", "digit": "3", "consent": "true"}
    response = client.post("/api/feedback", data=form, content_type=content_type)
    assert response.status_code == 415
    assert response.json["error"] == bodies.JSON_ONLY  # not "or a form"
    assert stored_keys(storage_dir, "feedback") == []
    documented = client.get("/api/openapi.json").json["paths"]["/api/feedback"]["post"]
    assert list(documented["requestBody"]["content"]) == ["application/json"]
    assert "not JSON" in documented["responses"]["415"]["description"]
    # Nothing was half-recorded: the same answer as JSON is the first.
    assert client.post("/api/feedback", json={**form, "consent": True}).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"digit": 3, "consent": True},
        {"id": "p1", "consent": True},
        {"id": "p1", "digit": 3},
        {"id": "p1", "digit": 10, "consent": True},
        {"id": "p1", "digit": "x", "consent": True},
        {"id": "p1", "digit": True, "consent": True},
        {"id": "p1", "digit": 3, "consent": "yes"},
        {"id": 5, "digit": 3, "consent": True},
        {"id": "blank", "digit": 3, "consent": True},
    ],
)
def test_bad_input_is_400_and_records_nothing(client, storage_dir, made, body):
    response = client.post("/api/feedback", json=body)
    assert response.status_code == 400
    assert response.json["error"]
    assert stored_keys(storage_dir, "feedback") == []
    assert stored_keys(storage_dir, "drawings") == []


def test_second_feedback_is_409_and_changes_nothing(client, storage_dir, made):
    assert (
        client.post("/api/feedback", json={"id": "p1", "digit": 3, "consent": True}).status_code
        == 202
    )
    before = (storage_dir / "feedback" / "p1.json").read_bytes()
    response = client.post("/api/feedback", json={"id": "p1", "digit": 8, "consent": True})
    assert response.status_code == 409
    assert (storage_dir / "feedback" / "p1.json").read_bytes() == before
    assert stored_keys(storage_dir, "drawings/8") == []


def test_concurrent_double_feedback_gives_exactly_one_202(app, made):
    statuses: list[int] = []
    start = threading.Barrier(8)

    def send(digit: int) -> None:
        client = app.test_client()
        start.wait()
        body = {"id": "p2", "digit": digit, "consent": True}
        statuses.append(client.post("/api/feedback", json=body).status_code)

    threads = [threading.Thread(target=send, args=(d,)) for d in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202] + [409] * 7
    storage = app.extensions["storage"]
    winner = feedback.load(storage, "p2")["digit"]
    feedback.flush()
    assert len(list(storage.list("drawings/"))) == 2
    assert all(key.startswith(f"drawings/{winner}/") for key in storage.list("drawings/"))


@pytest.mark.s3
def test_feedback_once_on_a_real_s3_server(s3_app, made):
    client = s3_app.test_client()
    body = {"id": "p1", "digit": 3, "consent": True}
    assert client.post("/api/feedback", json=body).status_code == 202
    assert client.post("/api/feedback", json={**body, "digit": 4}).status_code == 409
    storage = s3_app.extensions["storage"]
    assert feedback.load(storage, "p1")["digit"] == 3
    feedback.flush()
    assert len([k for k in storage.list("drawings/3/") if k.endswith(".json")]) == 1


def test_ids_with_other_digits_or_a_newline_are_404(client):
    good = predictions.new_id()
    for pid in ("p" + good[1:22].translate(ARABIC_INDIC) + good[22:], good + "\n"):
        response = client.post("/api/feedback", json={"id": pid, "digit": 3, "consent": False})
        assert response.status_code == 404, pid


def test_malformed_id_is_404_without_waiting(client):
    import time

    start = time.monotonic()
    response = client.post("/api/feedback", json={"id": "not-an-id", "digit": 3, "consent": True})
    assert response.status_code == 404
    assert time.monotonic() - start < 0.1


# --- the trainer's backfill: consented drawings whose dataset copy failed ------------------


def answered(client, pid: str, digit: int | None, consent: bool = True, copy: bool = True) -> dict:
    """Feedback through the API; copy=False: the dataset copy fails, as if the disk refused it."""

    def refused(*args, **kwargs):
        raise StorageError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        if not copy:
            patch.setattr(dataset, "save_drawing", refused)
        body = {"id": pid, "digit": digit, "consent": consent}
        assert client.post("/api/feedback", json=body).status_code == 202
        feedback.flush()
    return feedback.load(feedback_storage(client), pid)


def engine_of(client):
    return db.engine_of(client.application)


def test_backfill_restores_a_failed_copy(client, made, caplog):
    storage = feedback_storage(client)
    answered(client, "p2", 7, copy=False)
    assert dataset.names(storage) == []
    with caplog.at_level(logging.INFO, logger="digits.feedback"):
        assert feedback.backfill_dataset(storage, engine_of(client)) == 1
    name = dataset.name_for_prediction("7", "p2")
    assert f"drawing {name} copied by the backfill" in caplog.text
    assert dataset.names(storage) == [name]
    assert client.get("/api/dataset/counts").json["counts"]["7"] == 1  # indexed too
    assert dataset.image(storage, name) == drawing_png()
    meta = dataset.metadata(storage, name)
    assert meta["label"] == "7" and meta["prediction_id"] == "p2"
    assert meta["source"] == "correction"
    with zipfile.ZipFile(io.BytesIO(export(storage))) as archive:
        assert archive.read(f"7/{name}.png") == drawing_png()


def export(storage) -> bytes:
    out = io.BytesIO()
    dataset.write_zip(storage, out)
    return out.getvalue()


def test_backfill_again_or_a_late_copy_changes_nothing(client, made):
    storage = feedback_storage(client)
    records = {"p1": answered(client, "p1", 3), "p2": answered(client, "p2", None, copy=False)}
    assert feedback.backfill_dataset(storage, engine_of(client)) == 1  # p2; p1's copy worked
    before = {key: storage.get(key).data for key in storage.list("drawings/")}
    assert feedback.backfill_dataset(storage, engine_of(client)) == 0
    assert {key: storage.get(key).data for key in storage.list("drawings/")} == before
    feedback.save_to_dataset(storage, records["p2"])  # the background copy, late: harmless
    assert sorted(dataset.names(storage)) == ["3_p1", "none_p2"]
    assert dataset.image(storage, "none_p2") == drawing_png()
    assert client.get("/api/dataset/counts").json["total"] == 2


def test_a_backfill_with_nothing_to_repair_reads_no_storage(client, made, monkeypatch):
    storage = feedback_storage(client)
    answered(client, "p1", 3)
    answered(client, "p2", 7, consent=False)
    touched = []
    for method in ("list", "get"):
        real = getattr(storage, method)
        monkeypatch.setattr(storage, method, lambda *a, real=real: touched.append(a) or real(*a))
    assert feedback.backfill_dataset(storage, engine_of(client)) == 0
    assert touched == []  # one query, whatever the dataset holds


def test_backfill_never_copies_without_consent(client, made):
    storage = feedback_storage(client)
    answered(client, "p1", 3, consent=False)
    answered(client, "p2", None, consent=False)
    assert feedback.backfill_dataset(storage, engine_of(client)) == 0
    assert list(storage.list("drawings/")) == []


@pytest.mark.parametrize("lost", ["meta", "image"])
def test_backfill_completes_a_half_written_drawing(client, made, lost):
    storage = feedback_storage(client)
    record = answered(client, "p1", 3, copy=False)
    name = dataset.name_for_prediction("3", "p1")
    if lost == "meta":  # killed between the two puts: the PNG alone, never committed
        storage.put(dataset.image_key(name), drawing_png())
    else:  # copied but killed before its row, then the PNG went missing
        feedback.save_to_dataset(storage, record)
        storage.delete(dataset.image_key(name))
    assert feedback.backfill_dataset(storage, engine_of(client)) == 1
    assert dataset.names(storage) == [name]
    assert dataset.image(storage, name) == drawing_png()
    assert dataset.metadata(storage, name)["label"] == "3"


def test_backfill_leaves_a_drawing_an_admin_deleted(client, made, monkeypatch):
    storage = feedback_storage(client)
    answered(client, "p1", 3)
    answered(client, "p2", 7, copy=False)
    monkeypatch.setitem(client.application.config, "ADMIN_TOKEN", "t")
    gone = client.delete("/api/dataset/3_p1", headers={"Authorization": "Bearer t"})
    assert gone.status_code == 200  # a bad sample
    assert feedback.backfill_dataset(storage, engine_of(client)) == 1  # p2 only
    assert dataset.names(storage) == ["7_p2"]
    storage.delete(feedback.copied_key("p1"))  # even without its copy marker
    assert feedback.backfill_dataset(storage, engine_of(client)) == 0
    assert dataset.names(storage) == ["7_p2"]


def test_feedback_waits_for_a_prediction_another_worker_is_still_writing(client, monkeypatch):
    """Another worker's writer takes its batch within WAKE_SECONDS; the feedback waits for it."""
    pid = predictions.new_id()
    appears = time.monotonic() + predictions.WAKE_SECONDS + 0.05  # then a quick write

    def load(storage, prediction_id):
        if prediction_id != pid or time.monotonic() < appears:
            raise feedback.NotFound(prediction_id)
        return fake_prediction(pid)

    monkeypatch.setattr(predictions, "load", load)
    body = {"id": pid, "digit": 3, "consent": False}
    assert client.post("/api/feedback", json=body).status_code == 202


def test_feedback_on_an_old_unknown_prediction_is_404_at_once(client, monkeypatch):
    waits = []
    monkeypatch.setattr(feedback.time, "sleep", waits.append)
    old = predictions.new_id(datetime(2026, 1, 1, tzinfo=UTC))
    body = {"id": old, "digit": 3, "consent": False}
    assert client.post("/api/feedback", json=body).status_code == 404
    assert waits == []  # a batch that old is in no writer's queue: nothing to wait for
    recent = {**body, "id": predictions.new_id()}
    assert client.post("/api/feedback", json=recent).status_code == 404
    assert waits == list(feedback.RETRY_DELAYS)
