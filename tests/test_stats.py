"""GET /api/stats: the numbers match the feedback given."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pytest

from digits import feedback, public, stats
from digits.cached import SharedAnswer
from tests.helpers import fake_prediction

# (prediction id, FNN said, CNN said, the user's digit)
GIVEN = [
    ("a", 3, 3, 3),
    ("b", 5, 3, 3),
    ("c", 7, 1, 7),
    ("d", 2, 2, None),  # not a digit: no accuracy either way
    ("e", 8, 8, 0),
]


@pytest.fixture
def answered(client, made):
    stats.clear_cache()
    for pid, fnn, cnn, digit in GIVEN:
        made[pid] = fake_prediction(pid, fnn=fnn, cnn=cnn)
        body = {"id": pid, "digit": digit, "consent": pid != "e"}
        assert client.post("/api/feedback", json=body).status_code == 202
    yield client
    stats.clear_cache()


def test_totals_count_only_feedback_with_a_digit(answered):
    body = answered.get("/api/stats").json
    assert body["totals"]["feedback"] == 5
    assert body["totals"]["fnn"] == {"correct": 2, "total": 4, "accuracy": 0.5}
    assert body["totals"]["cnn"] == {"correct": 2, "total": 4, "accuracy": 0.5}


def test_per_digit_recall_and_confusion(answered):
    body = answered.get("/api/stats").json
    fnn, cnn = body["per_digit"]["fnn"], body["per_digit"]["cnn"]
    assert fnn[3] == 0.5 and cnn[3] == 1.0
    assert fnn[7] == 1.0 and cnn[7] == 0.0
    assert fnn[0] == 0.0 and cnn[0] == 0.0
    assert fnn[1] is None and cnn[9] is None
    confusion = body["confusion"]["cnn"]
    assert confusion[3][3] == 2 and confusion[7][1] == 1 and confusion[0][8] == 1
    assert sum(map(sum, confusion)) == 4
    assert sum(map(sum, body["confusion"]["fnn"])) == 4


def test_timeline_groups_by_day_net_and_version(answered):
    timeline = answered.get("/api/stats").json["timeline"]
    assert {(p["net"], p["version"]) for p in timeline} == {
        ("fnn", "original"),
        ("cnn", "original"),
    }
    cnn = next(p for p in timeline if p["net"] == "cnn")
    assert (cnn["correct"], cnn["total"], cnn["accuracy"]) == (2, 4, 0.5)
    assert len(cnn["date"]) == 10


class Clock(datetime):
    """datetime whose now() is the time a test sets."""

    at = datetime(2026, 11, 24, tzinfo=UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.at


def test_versions_of_one_day_get_their_own_times(client, made, monkeypatch):  # noqa: F811
    """The chart places points by `time`: two versions that served on one day must not share it."""
    stats.clear_cache()
    monkeypatch.setattr(feedback, "datetime", Clock)
    for pid, version, hour in [("a", "original", 9), ("b", "original", 10), ("c", "v1", 15)]:
        made[pid] = fake_prediction(pid) | {"versions": {"fnn": version, "cnn": "original"}}
        Clock.at = datetime(2026, 11, 24, hour, tzinfo=UTC)
        body = {"id": pid, "digit": 3, "consent": False}
        assert client.post("/api/feedback", json=body).status_code == 202
    points = {(p["net"], p["version"]): p for p in client.get("/api/stats").json["timeline"]}
    assert {p["date"] for p in points.values()} == {"2026-11-24"}
    assert points["fnn", "original"]["time"] == "2026-11-24T09:30:00+00:00"
    assert points["fnn", "v1"]["time"] == "2026-11-24T15:00:00+00:00"
    assert points["cnn", "original"]["time"] == "2026-11-24T11:20:00+00:00"  # all three
    stats.clear_cache()


def test_versions_list_the_current_ones(answered):
    versions = answered.get("/api/stats").json["versions"]
    assert {(v["net"], v["version"], v["current"]) for v in versions} >= {
        ("fnn", "original", True),
        ("cnn", "original", True),
    }
    assert all(
        set(v["metrics"]) >= {"mnist_test_accuracy", "user_heldout_accuracy"} for v in versions
    )


def test_empty_stats(client):
    stats.clear_cache()
    body = client.get("/api/stats").json
    assert body["totals"] == {
        "feedback": 0,
        "fnn": {"correct": 0, "total": 0, "accuracy": None},
        "cnn": {"correct": 0, "total": 0, "accuracy": None},
    }
    assert body["per_digit"]["fnn"] == [None] * 10
    assert body["timeline"] == []


def test_answer_is_cached_briefly(answered, made, monkeypatch):  # noqa: F811
    first = answered.get("/api/stats").json["totals"]["feedback"]
    made["f"] = fake_prediction("f")
    answered.post("/api/feedback", json={"id": "f", "digit": 3, "consent": True})
    assert answered.get("/api/stats").json["totals"]["feedback"] == first  # still cached
    monkeypatch.setattr(stats._answers, "seconds", 0.0)
    assert answered.get("/api/stats").json["totals"]["feedback"] == first + 1


def test_the_cache_says_what_it_holds():
    """The cached answer is the rendered body and its ETag, as public.rendered_json makes it:
    a bare SharedAnswer would hold Any and hide a render of another shape."""
    rendered = typing.get_type_hints(public.rendered_json)["return"]
    assert typing.get_type_hints(stats)["_answers"] == SharedAnswer[rendered]
    assert typing.get_type_hints(stats.cached_stats)["return"] == rendered
