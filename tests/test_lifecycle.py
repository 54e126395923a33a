"""Versions that do not pile up: the trainer's threshold, the versions' cards in the database,
pruning (kept: the shipped, the served, the newest KEEP_VERSIONS, the pinned), pinning, and the
pages reading the cards instead of every metrics.json. On SQLite and PostgreSQL, on a local
folder and on S3 where storage is involved."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from digits import bodies, db, feedback, lifecycle, progress, rebuild, records, registry, stats
from digits.holdout import feedback_held_out
from tests.helpers import (
    CountingStorage,
    fake_prediction,
    make_models_dir,
    table_rows,
    tiny_bytes,
)

TOKEN = "s3cret"
START = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """Versions named a minute apart, in the order they are published (a real trainer's are
    minutes apart; two in one second would sort by their random suffix)."""
    moments = (START + timedelta(minutes=i) for i in itertools.count())
    real = registry.new_version
    monkeypatch.setattr(registry, "new_version", lambda now=None: real(now or next(moments)))


@pytest.fixture
def models_dir(tmp_path) -> str:
    return str(make_models_dir(tmp_path / "models"))


def publish(store, engine, net: str = "cnn", accuracy: float = 0.9) -> str:
    """A version as the trainer publishes it: files, pointer, then its row."""
    card = {"mnist_test_accuracy": accuracy, "feedback_ids": ["p1", "p2"]}
    version = registry.publish(store, net, tiny_bytes(net, "b"), b"keras", card)
    lifecycle.record(store, engine, net, version)
    return version


def names(engine, net: str = "cnn") -> list[str]:
    with db.reading(engine) as conn:
        return sorted(records.version_names(conn, net))


def keys_of(store, net: str, version: str) -> list[str]:
    return list(store.list(f"models/{net}/{version}/"))


# --- the threshold --------------------------------------------------------------------------


def answer(engine, pid: str, at: datetime, digit: int | None = 4, consent: bool = True) -> None:
    record = feedback.build_record(fake_prediction(pid), digit, consent)
    record["created"] = at.isoformat()
    records.add_feedback(engine, record)


def learnable_ids(count: int, held_out: bool = False) -> list[str]:
    found = (f"p{i:04d}" for i in itertools.count())
    return list(itertools.islice((p for p in found if feedback_held_out(p) == held_out), count))


def test_a_net_waits_for_enough_new_samples_or_for_the_oldest_to_age(engine):
    now = START.timestamp()
    assert progress.waiting(engine, "cnn", 3, 3600, now) == ""  # nothing new: nothing to wait for
    for n, pid in enumerate(learnable_ids(2)):
        answer(engine, pid, START - timedelta(minutes=30 - n))
    for pid in learnable_ids(5, held_out=True):  # never learned: they do not count
        answer(engine, pid, START - timedelta(hours=5))
    answer(engine, "q-no-consent", START - timedelta(hours=5), consent=False)
    answer(engine, "q-not-a-digit", START - timedelta(hours=5), digit=None)
    said = progress.waiting(engine, "cnn", 3, 3600, now)
    assert said == "2 new, need 3 or until 2026-12-01T00:30+00:00"
    assert progress.waiting(engine, "cnn", 3, 3600, now + 30 * 60) == ""  # the oldest is due
    assert progress.waiting(engine, "cnn", 2, 3600, now) == ""  # enough are new
    answer(engine, learnable_ids(3)[-1], START)
    assert progress.waiting(engine, "cnn", 3, 3600, now) == ""
    with db.writing(engine) as conn:  # the FNN learned them all: it has nothing to wait for
        records.mark(conn, "fnn", learnable_ids(3), "learned", "v1")
    assert progress.waiting(engine, "fnn", 3, 3600, now) == ""


def test_the_trainer_says_a_nets_waiting_line_once_and_again_when_it_changes(capsys):
    from digits.cli_trainer import reporter

    report = reporter()
    for count in (6, 6, 7):  # one pass after another
        reason = f"{count} new, need 20 or until T"
        said = {"net": "cnn", "status": "waiting", "reason": reason}
        report(SimpleNamespace(**said, candidate=None, version=None, base=None, metrics={}))
    assert capsys.readouterr().out.splitlines() == [
        "trainer: cnn waiting: 6 new, need 20 or until T",
        "trainer: cnn waiting: 7 new, need 20 or until T",
    ]


# --- the cards in the database ----------------------------------------------------------------


def test_a_published_version_has_a_row_without_its_learned_ids(store, engine, clock, models_dir):
    version = publish(store, engine)
    with db.reading(engine) as conn:
        row = records.version_row(conn, "cnn", version)
    card = json.loads(row["card"])
    assert card["mnist_test_accuracy"] == 0.9 and "feedback_ids" not in card
    assert row["created"] == card["created"] and row["pinned"] is False
    listed = lifecycle.listed(store, engine, models_dir, 10)
    assert [(e["version"], e["current"]) for e in listed["cnn"]] == [
        ("original", False),
        (version, True),
    ]
    assert [e["version"] for e in listed["fnn"]] == ["original"]


def test_the_pages_list_the_newest_the_pinned_and_the_served_only(engine, clock, tmp_path):
    store = CountingStorage(tmp_path / "store")
    models_dir = str(make_models_dir(tmp_path / "models"))
    made = [publish(store, engine, accuracy=i / 10) for i in range(6)]
    lifecycle.pin(store, engine, "cnn", made[0], True, by="test")
    registry.rollback(store, "cnn", made[1], by="test")
    store.read = []
    listed = lifecycle.listed(store, engine, models_dir, 2)
    shown = [e["version"] for e in listed["cnn"]]
    assert shown == ["original", made[0], made[1], made[4], made[5]]
    assert [e["version"] for e in listed["cnn"] if e["pinned"]] == [made[0]]
    assert [e["version"] for e in listed["cnn"] if e["current"]] == [made[1]]
    assert store.read == [registry.POINTER]  # no metrics.json


def test_the_pages_and_the_api_read_no_metrics_json(make_app, clock, tmp_path):
    store = CountingStorage(tmp_path / "store")
    models_dir = str(make_models_dir(tmp_path / "models"))
    app = make_app(STORAGE=store, MODELS_DIR=models_dir, KEEP_VERSIONS=3)
    engine = db.engine_of(app)
    made = [publish(store, engine, "cnn", accuracy=i / 10) for i in range(5)]
    fnn = publish(store, engine, "fnn")
    client = app.test_client()
    app.extensions["models"].recognizer()  # a worker loads its nets (and their cards) once
    stats.clear_cache()
    store.read = []
    versions = client.get("/api/stats").json["versions"]
    assert [v["version"] for v in versions if v["net"] == "cnn"] == ["original", *made[2:]]
    assert {(v["net"], v["version"]) for v in versions if v["current"]} == {
        ("cnn", made[-1]),
        ("fnn", fnn),
    }
    assert versions[-1]["metrics"]["mnist_test_accuracy"] == 0.4
    html = client.get("/models").get_data(as_text=True)
    assert made[-1] in html and "40.00%" in html
    nets = client.get("/api/models").json["nets"]
    assert nets["cnn"]["current"]["version"] == made[-1]
    assert nets["cnn"]["current"]["metrics"]["mnist_test_accuracy"] == 0.4
    assert [key for key in store.read if key.endswith("metrics.json")] == []
    stats.clear_cache()


def test_a_served_version_without_a_row_is_still_shown(store, engine, clock, models_dir):
    """Published before the table (or a row the trainer has not written yet): its one card."""
    version = registry.publish(store, "fnn", tiny_bytes("fnn", "b"), b"keras", {"x": 1})
    listed = lifecycle.listed(store, engine, models_dir, 10)
    assert [e["version"] for e in listed["fnn"]] == ["original", version]
    assert listed["fnn"][1]["metrics"]["x"] == 1
    assert lifecycle.card(store, engine, models_dir, "fnn", version)["x"] == 1


# --- pruning ------------------------------------------------------------------------------------


@pytest.fixture
def six(store, engine, clock) -> list[str]:
    """Six CNN versions; the first pinned, the second served; one FNN version."""
    made = [publish(store, engine, accuracy=i / 10) for i in range(6)]
    lifecycle.pin(store, engine, "cnn", made[0], True, by="test")
    registry.rollback(store, "cnn", made[1], by="test")
    publish(store, engine, "fnn")
    return made


def test_prune_keeps_the_served_the_newest_and_the_pinned(store, engine, six, models_dir):
    dry = lifecycle.prune(store, engine, "cnn", keep=2, apply=False)
    assert dry.deleted == six[2:4] and dry.kept == [six[0], six[1], six[4], six[5]]
    assert registry.published(store, "cnn") == six  # a dry run deletes nothing
    done = lifecycle.prune(store, engine, "cnn", keep=2)
    assert done.deleted == six[2:4] and done.spared == []
    assert registry.published(store, "cnn") == [six[0], six[1], six[4], six[5]]
    assert names(engine) == [six[0], six[1], six[4], six[5]]
    for gone in six[2:4]:
        assert keys_of(store, "cnn", gone) == []  # all three files
        with pytest.raises(registry.NotFound):  # a rollback to it is a clean 404
            registry.rollback(store, "cnn", gone)
    assert len(registry.published(store, "fnn")) == 1 and len(names(engine, "fnn")) == 1
    assert registry.current(store)["cnn"] == six[1]
    assert registry.load_tflite(store, models_dir, "cnn", "original") == tiny_bytes("cnn")
    assert lifecycle.prune(store, engine, "cnn", keep=2).deleted == []  # nothing more to do


def test_unpinned_it_is_pruned(store, engine, six):
    lifecycle.pin(store, engine, "cnn", six[0], False, by="test")
    assert lifecycle.prune(store, engine, "cnn", keep=2).deleted == [six[0], six[2], six[3]]
    assert keys_of(store, "cnn", six[0]) == []


@pytest.mark.parametrize("meanwhile", ["rollback", "pin"])
def test_a_version_served_or_pinned_during_the_prune_is_kept(
    store, engine, six, monkeypatch, meanwhile
):
    real_plan = lifecycle.plan

    def plan_then_meanwhile(storage, engine, net, keep):
        listing, done = real_plan(storage, engine, net, keep)
        if meanwhile == "rollback":  # an admin's rollback lands between the plan and the delete
            registry.rollback(storage, net, done.deleted[0], by="admin")
        else:
            lifecycle.pin(storage, engine, net, done.deleted[0], True, by="admin")
        return listing, done

    monkeypatch.setattr(lifecycle, "plan", plan_then_meanwhile)
    done = lifecycle.prune(store, engine, "cnn", keep=2)
    assert done.spared == [six[2]] and done.deleted == [six[3]]
    assert six[2] in registry.published(store, "cnn") and six[2] in names(engine)
    assert len(keys_of(store, "cnn", six[2])) >= 3
    if meanwhile == "rollback":
        assert registry.current(store)["cnn"] == six[2]


@pytest.mark.parametrize("meanwhile", ["rollback", "pin"])
def test_a_rollback_or_pin_landing_as_the_prune_deletes_keeps_its_version(
    store, engine, six, monkeypatch, meanwhile
):
    """It found the card just before the prune deleted metrics.json: the prune reads the pointer
    and the pin once more after that delete, and puts the card back."""
    victim = registry.version_key("cnn", six[2], "metrics.json")
    real_delete = store.delete

    def delete(key):
        if key == victim and not lifecycle.is_pinned(store, "cnn", six[2]):
            if registry.current(store)["cnn"] != six[2]:
                if meanwhile == "rollback":
                    registry.rollback(store, "cnn", six[2], by="admin")
                else:
                    lifecycle.pin(store, engine, "cnn", six[2], True, by="admin")
        real_delete(key)

    monkeypatch.setattr(store, "delete", delete)
    done = lifecycle.prune(store, engine, "cnn", keep=2)
    assert done.spared == [six[2]] and done.deleted == [six[3]]
    assert len(keys_of(store, "cnn", six[2])) >= 3 and six[2] in registry.published(store, "cnn")
    assert six[2] in names(engine)


def test_a_pin_of_a_version_deleted_meanwhile_is_refused(store, engine, six, monkeypatch):
    """The prune read no pin and deleted the version while the pin was being written: the pin
    finds the card gone, takes itself away and answers NotFound."""
    marker = lifecycle.pin_key("cnn", six[2])
    real_put = store.put

    def put(key, data, **kwargs):
        if key == marker:
            lifecycle.prune(store, engine, "cnn", keep=2)
        return real_put(key, data, **kwargs)

    monkeypatch.setattr(store, "put", put)
    with pytest.raises(registry.NotFound):
        lifecycle.pin(store, engine, "cnn", six[2], True, by="admin")
    assert keys_of(store, "cnn", six[2]) == [] and six[2] not in names(engine)


def test_a_rollback_to_a_version_deleted_meanwhile_moves_back_and_is_refused(
    store, engine, six, monkeypatch
):
    """The prune read the pointer before the rollback moved it, and deleted the version: the
    rollback finds its card gone once it has moved, moves back and answers NotFound."""
    real_check = registry._check_servable

    def checked_then_pruned(storage, net, version):
        real_check(storage, net, version)
        lifecycle.prune(storage, engine, net, keep=2)

    monkeypatch.setattr(registry, "_check_servable", checked_then_pruned)
    with pytest.raises(registry.NotFound):
        registry.rollback(store, "cnn", six[2], by="admin")
    assert registry.current(store)["cnn"] == six[1]
    assert keys_of(store, "cnn", six[2]) == []


def test_a_half_deleted_or_unfinished_version_is_cleared_once_old(store, engine, clock):
    publish(store, engine)
    now = datetime.now(UTC)
    old = registry.new_version(now - timedelta(hours=2))  # its metrics.json was deleted first
    store.put(registry.version_key("cnn", old, "model.tflite"), b"x")
    fresh = registry.new_version(now)  # a publish in progress: its metrics.json comes last
    store.put(registry.version_key("cnn", fresh, "model.tflite"), b"x")
    done = lifecycle.prune(store, engine, "cnn", keep=1)
    assert done.leftovers == [old] and keys_of(store, "cnn", old) == []
    assert keys_of(store, "cnn", fresh) != []


def test_prune_adds_the_rows_missing_and_drops_the_stale(store, engine, clock):
    before = [registry.publish(store, "cnn", tiny_bytes("cnn", "b"), b"k", {}) for _ in range(3)]
    with db.writing(engine) as conn:  # a row whose version is gone from storage
        ghost = {"net": "cnn", "version": registry.new_version(), "created": None, "card": "{}"}
        records.add_version(conn, ghost)
    lifecycle.prune(store, engine, "cnn", keep=2)
    assert names(engine) == before[1:]


def test_rebuild_restores_the_version_rows(store, engine, six):
    lifecycle.prune(store, engine, "cnn", keep=2)
    rows = table_rows(engine, db.model_versions)
    with db.writing(engine) as conn:
        conn.execute(db.model_versions.delete())
    done = rebuild.rebuild(store, engine, say=lambda line: None)
    assert done.versions == {"fnn": 1, "cnn": 4}
    assert table_rows(engine, db.model_versions) == rows
    with db.reading(engine) as conn:
        assert records.version_names(conn, "cnn", pinned_only=True) == {six[0]}


# --- pinning through the API and the commands -------------------------------------------------


@pytest.fixture
def admin_app(make_app, tmp_path, clock):
    return make_app(ADMIN_TOKEN=TOKEN, MODELS_DIR=str(make_models_dir(tmp_path / "models")))


def pin_request(client, body, token: str | None = TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/models/pin", json=body, headers=headers, **kwargs)


def test_the_pin_api_checks_the_token_and_the_body(admin_app):
    store, engine = admin_app.extensions["storage"], db.engine_of(admin_app)
    version = publish(store, engine)
    client = admin_app.test_client()
    good = {"net": "cnn", "version": version, "pinned": True}
    assert pin_request(client, good, token=None).status_code == 401
    assert pin_request(client, good, token="wrong").status_code == 403
    fields = {"net": "cnn", "version": version, "pinned": "true"}
    form = client.post("/api/models/pin", data=fields, headers={"Authorization": f"Bearer {TOKEN}"})
    assert form.status_code == 415
    for bad, why in [
        ({**good, "net": "rnn"}, "net must be one of"),
        ({**good, "version": "original"}, "the original is always kept"),
        ({**good, "version": "../current"}, "version must be a published version"),
        ({**good, "version": ["x"]}, "version must be a published version"),
        ({**good, "pinned": "yes"}, "pinned must be true or false"),
        ({**good, "pinned": 1}, "pinned must be true or false"),
        ({"net": "cnn", "version": version}, "pinned must be true or false"),
    ]:
        response = pin_request(client, bad)
        assert response.status_code == 400 and why in response.json["error"], bad
    unknown = {**good, "version": "20200101T000000Z-abcdef"}
    response = pin_request(client, unknown)
    assert response.status_code == 404 and "no version" in response.json["error"]
    assert names(engine) == [version] and list(store.list("models/cnn/20200101")) == []
    assert not lifecycle.is_pinned(store, "cnn", version)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_the_pin_api_refuses_what_is_not_json_saying_it_takes_json_only(admin_app, content_type):
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = "net=cnn&version=x&pinned=true"
    refused = client.post("/api/models/pin", data=body, content_type=content_type, headers=headers)
    assert refused.status_code == 415 and refused.json["error"] == bodies.JSON_ONLY
    # /hook takes forms too, and its refusal says so
    hook = client.post("/hook", data=body, content_type="text/plain")
    assert hook.status_code == 415 and hook.json["error"] == bodies.JSON_OR_FORM


def test_a_version_pinned_through_the_api_is_kept_until_unpinned(admin_app):
    store, engine = admin_app.extensions["storage"], db.engine_of(admin_app)
    made = [publish(store, engine) for _ in range(3)]
    client = admin_app.test_client()
    response = pin_request(client, {"net": "cnn", "version": made[0], "pinned": True})
    assert response.status_code == 200
    assert response.json == {"net": "cnn", "version": made[0], "pinned": True}
    assert lifecycle.prune(store, engine, "cnn", keep=1).deleted == [made[1]]
    response = pin_request(client, {"net": "cnn", "version": made[0], "pinned": False})
    assert response.status_code == 200 and response.json["pinned"] is False
    assert lifecycle.prune(store, engine, "cnn", keep=1).deleted == [made[0]]
    rollback = client.post(
        "/api/models/rollback",
        json={"net": "cnn", "version": made[0]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert rollback.status_code == 404 and "no version" in rollback.json["error"]
    assert registry.current(store)["cnn"] == made[-1]


def test_the_models_commands_pin_list_and_prune(admin_app):
    store, engine = admin_app.extensions["storage"], db.engine_of(admin_app)
    made = [publish(store, engine) for _ in range(4)]
    runner = admin_app.test_cli_runner()
    pinned = runner.invoke(args=["models", "pin", "cnn", made[0]])
    assert pinned.exit_code == 0 and "pinned" in pinned.output
    listed = runner.invoke(args=["models", "list"]).output
    assert sum(made[0] in line and "pinned" in line for line in listed.splitlines()) == 1
    admin_app.config["KEEP_VERSIONS"] = 1
    dry = runner.invoke(args=["models", "prune"])
    assert dry.exit_code == 0 and f"would delete {made[1]}" in dry.output
    assert "--apply" in dry.output and registry.published(store, "cnn") == made
    applied = runner.invoke(args=["models", "prune", "--apply"])
    assert applied.exit_code == 0 and "cnn: keeps 2, deleted 2" in applied.output
    assert registry.published(store, "cnn") == [made[0], made[3]]
    unpinned = runner.invoke(args=["models", "pin", "cnn", made[0], "--unpin"])
    assert unpinned.exit_code == 0 and "unpinned" in unpinned.output
    for args, said in [
        (["models", "pin", "cnn", made[1]], "cnn has no version"),
        (["models", "pin", "cnn", "original"], "the original is always kept"),
        (["models", "pin", "rnn", made[0]], "Invalid value"),
    ]:
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and said in result.output, args


def test_the_migration_adds_and_removes_the_table(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0001")
    assert "model_versions" not in sa.inspect(engine).get_table_names()
    db.upgrade(engine, "0002")
    assert "model_versions" in sa.inspect(engine).get_table_names()
    engine.dispose()
