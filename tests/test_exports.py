"""Dataset exports as jobs (digits/exports.py, the admin routes): queued by the API, built by the
worker into storage, downloaded by a link. The database parts run on SQLite and PostgreSQL, the
storage parts on a local folder and on S3 over HTTP (moto)."""

from __future__ import annotations

import csv
import io
import time
import urllib.request
import zipfile

import jsonschema
import pytest
import sqlalchemy as sa

from digits import cli_trainer, dataset, db, exports
from digits.storage import LocalStorage, StorageUnavailable
from tests.helpers import (
    documented_schema,
    drawing_png,
    in_two_processes,
    save_indexed,
    table_rows,
)

TOKEN = "s3cret"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
UNKNOWN = "x20261207T000000-0123abcd"  # an id of the right form that no job has


@pytest.fixture
def export_app(make_app, store, database_url, engine):
    """The app on each storage (local, S3) and each database (SQLite, PostgreSQL; `engine`
    brings it to the newest schema, as the release phase does)."""
    return make_app(STORAGE=store, DATABASE_URL=database_url, ADMIN_TOKEN=TOKEN)


def fill(app, count: int) -> list[str]:
    labels = [*"0123456789", "none"]
    return [save_indexed(app, drawing_png(), labels[i % len(labels)]) for i in range(count)]


def work(app) -> str | None:
    """One poll of the export worker, as the trainer's export thread makes it."""
    return exports.run_pending(db.engine_of(app), app.extensions["storage"], "test-worker")


def zip_contents(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def old_export(storage) -> bytes:
    """The zip as GET /api/dataset/export built it in the request before exports were jobs."""
    out = io.BytesIO()
    dataset.write_zip(storage, out)
    return out.getvalue()


# --- the whole flow --------------------------------------------------------------------------


def test_an_export_is_queued_built_by_the_worker_and_downloaded(export_app):
    fill(export_app, 12)
    client = export_app.test_client()
    created = client.post("/api/dataset/exports", headers=ADMIN)
    assert created.status_code == 202
    job = created.json
    assert job["state"] == "queued" and job["url"] == f"/api/dataset/exports/{job['id']}"
    assert created.headers["Location"] == job["url"]
    assert "download" not in job

    assert work(export_app) == job["id"]
    done = client.get(job["url"], headers=ADMIN).json
    assert done["state"] == "done" and done["done"] == done["total"] == 12
    assert done["created"] <= done["started"] <= done["finished"] and done["error"] is None
    zipped = download(client, done)
    assert zip_contents(zipped) == zip_contents(old_export(export_app.extensions["storage"]))
    assert done["bytes"] == len(zipped)


def download(client, job: dict) -> bytes:
    """The zip behind a done job's link: S3's presigned URL over HTTP, or the app's route."""
    if job["download"].startswith("http"):
        with urllib.request.urlopen(job["download"], timeout=10) as response:
            assert "attachment" in response.headers["Content-Disposition"]
            return response.read()
    response = client.get(job["download"], headers=ADMIN)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == "attachment; filename=digits-dataset.zip"
    return response.data


def test_the_zip_keeps_the_layout_of_the_export_before_jobs(make_app):
    app = make_app(ADMIN_TOKEN=TOKEN)
    names = fill(app, 3)
    client = app.test_client()
    client.post("/api/dataset/exports", headers=ADMIN)
    work(app)
    job = client.get(f"/api/dataset/exports/{exports_of(app)[0]}", headers=ADMIN).json
    archive = zipfile.ZipFile(io.BytesIO(download(client, job)))
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert [r["file"] for r in rows] == sorted(f"{dataset.label_of(n)}/{n}.png" for n in names)
    assert set(rows[0]) == {"file", "label", "source", "created"}
    assert archive.read(rows[0]["file"]) == drawing_png()
    assert sorted(archive.namelist()) == sorted([*(r["file"] for r in rows), "labels.csv"])


def test_a_job_reads_only_the_images_and_zips_what_the_old_export_did(make_app, monkeypatch):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 5)
    storage = app.extensions["storage"]
    before = zip_contents(old_export(storage))
    read, get = [], storage.get
    monkeypatch.setattr(storage, "get", lambda key: read.append(key) or get(key))
    client = app.test_client()
    client.post("/api/dataset/exports", headers=ADMIN)
    work(app)
    assert len(read) == 5 and all(key.endswith(".png") for key in read)  # the index has the rest
    monkeypatch.undo()
    job = client.get(f"/api/dataset/exports/{exports_of(app)[0]}", headers=ADMIN).json
    assert zip_contents(download(client, job)) == before


def test_a_download_has_its_length_and_resumes_from_a_range(make_app):
    """A zip of hundreds of MB whose download broke off goes on where it stopped (curl -C -,
    browsers), and only while it is the same file (If-Range with its ETag)."""
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 4)
    client = app.test_client()
    client.post("/api/dataset/exports", headers=ADMIN)
    work(app)
    job = client.get(f"/api/dataset/exports/{exports_of(app)[0]}", headers=ADMIN).json
    whole = client.get(job["download"], headers=ADMIN)
    assert whole.headers["Content-Length"] == str(job["bytes"]) == str(len(whole.data))
    assert whole.headers["Accept-Ranges"] == "bytes"
    rest = {**ADMIN, "Range": "bytes=100-", "If-Range": whole.headers["ETag"]}
    part = client.get(job["download"], headers=rest)
    assert part.status_code == 206 and part.data == whole.data[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{len(whole.data) - 1}/{len(whole.data)}"
    changed = client.get(job["download"], headers={**rest, "If-Range": '"another-file"'})
    assert changed.status_code == 200 and changed.data == whole.data  # all of it, afresh
    past = client.get(job["download"], headers={**ADMIN, "Range": f"bytes={job['bytes']}-"})
    assert past.status_code == 416


def exports_of(app) -> list[str]:
    return [row.id for row in table_rows(db.engine_of(app), db.export_jobs)]


def test_on_s3_the_download_route_sends_to_the_presigned_link(make_app, s3_server, s3_url):
    app = make_app(STORAGE_URL=s3_url, AWS_ENDPOINT_URL=s3_server.endpoint, ADMIN_TOKEN=TOKEN)
    fill(app, 2)
    client = app.test_client()
    job_url = client.post("/api/dataset/exports", headers=ADMIN).json["url"]
    work(app)
    job = client.get(job_url, headers=ADMIN).json
    assert job["download"].startswith(s3_server.endpoint)
    assert "X-Amz-Expires=3600" in job["download"]  # a short life, signed with SigV4
    routed = client.get(f"{job_url}/download", headers=ADMIN)
    assert routed.status_code == 303 and routed.headers["Location"].startswith(s3_server.endpoint)
    assert zip_contents(download(client, job)) == zip_contents(
        old_export(app.extensions["storage"])
    )


def test_progress_is_shown_while_the_worker_builds(make_app, monkeypatch):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 7)
    client = app.test_client()
    job_url = client.post("/api/dataset/exports", headers=ADMIN).json["url"]
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 2)
    seen = []
    real_beat = exports.beat

    def beat_and_look(engine, job, done, total):
        real_beat(engine, job, done, total)
        status = client.get(job_url, headers=ADMIN).json
        seen.append((status["state"], status["done"], status["total"]))

    monkeypatch.setattr(exports, "beat", beat_and_look)
    work(app)
    assert seen == [("running", d, 7) for d in (0, 2, 4, 6, 7)]
    assert client.get(job_url, headers=ADMIN).json["state"] == "done"


def test_a_second_request_joins_the_job_under_way(make_app):
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()
    first = client.post("/api/dataset/exports", headers=ADMIN).json
    second = client.post("/api/dataset/exports", headers=ADMIN, json={})
    assert second.status_code == 202 and second.json["id"] == first["id"]
    work(client.application)
    third = client.post("/api/dataset/exports", headers=ADMIN).json
    assert third["id"] != first["id"] and third["state"] == "queued"


def test_unknown_and_unfinished_exports(make_app):
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()
    for job_id in (UNKNOWN, "nope", "x" * 300):
        missing = client.get(f"/api/dataset/exports/{job_id}", headers=ADMIN)
        assert missing.status_code == 404 and "no such export" in missing.json["error"]
        assert (
            client.get(f"/api/dataset/exports/{job_id}/download", headers=ADMIN).status_code == 404
        )
    job = client.post("/api/dataset/exports", headers=ADMIN).json
    early = client.get(f"{job['url']}/download", headers=ADMIN)
    assert early.status_code == 409 and "queued" in early.json["error"]


def test_a_bodyless_post_is_taken_but_a_wrong_body_is_not(make_app):
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()
    refused = client.post(
        "/api/dataset/exports", headers=ADMIN, data="x", content_type="text/plain"
    )
    assert refused.status_code == 415
    assert exports_of(client.application) == []
    assert client.post("/api/dataset/exports", headers=ADMIN).status_code == 202


def test_the_old_route_starts_an_export_then_sends_to_it(make_app):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 2)
    client = app.test_client()
    started = client.get("/api/dataset/export", headers=ADMIN)
    assert started.status_code == 409 and "POST /api/dataset/exports" in started.json["error"]
    assert started.headers["Location"] == started.json["url"]
    assert started.headers["Retry-After"] == "5"
    again = client.get("/api/dataset/export", headers=ADMIN)
    assert again.status_code == 409 and again.json["id"] == started.json["id"]
    work(app)
    ready = client.get("/api/dataset/export", headers=ADMIN)
    assert ready.status_code == 303
    assert ready.headers["Location"] == f"{started.json['url']}/download"
    followed = client.get(ready.headers["Location"], headers=ADMIN)
    assert zip_contents(followed.data) == zip_contents(old_export(app.extensions["storage"]))


def test_export_answers_match_their_documented_schemas(make_app):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 1)
    client = app.test_client()
    document = client.get("/api/openapi.json").json

    def check(path: str, method: str, response) -> dict:
        schema = documented_schema(document, path, method, response.status_code)
        jsonschema.Draft202012Validator(schema).validate(response.json)
        return response.json

    job = check("/api/dataset/export", "get", client.get("/api/dataset/export", headers=ADMIN))
    check("/api/dataset/exports", "post", client.post("/api/dataset/exports", headers=ADMIN))
    one = "/api/dataset/exports/{job_id}"
    assert check(one, "get", client.get(job["url"], headers=ADMIN))["state"] == "queued"
    work(app)
    assert check(one, "get", client.get(job["url"], headers=ADMIN))["state"] == "done"
    check("/api/dataset/export", "get", client.get("/api/dataset/export", headers=ADMIN))
    check(one, "get", client.get(f"/api/dataset/exports/{UNKNOWN}", headers=ADMIN))


def test_an_export_needs_the_admin_token(make_app):
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()
    assert client.post("/api/dataset/exports").status_code == 401
    assert (
        client.post("/api/dataset/exports", headers={"Authorization": "Bearer no"}).status_code
        == 403
    )
    assert exports_of(client.application) == []


# --- the worker: claims, failures, cleanup ---------------------------------------------------


def test_one_of_two_claimers_wins(engine):
    job, created = exports.request(engine)
    assert created
    first, second = exports.claim(engine, "a"), exports.claim(engine, "b")
    assert first["id"] == job["id"] and first["worker"] == "a" and second is None
    assert first["state"] == "running" and first["attempts"] == 1


def race_claim(url: str, name: str, start: float) -> str | None:
    engine = db.make_engine(url)
    time.sleep(max(0.0, start - time.time()))
    job = exports.claim(engine, name)
    engine.dispose()
    return job and job["worker"]


def race_request(url: str, start: float) -> str:
    engine = db.make_engine(url)
    time.sleep(max(0.0, start - time.time()))
    job, _ = exports.request(engine)
    engine.dispose()
    return job["id"]


@pytest.mark.slow
def test_two_processes_queue_one_job_and_one_of_them_claims_it(engine, database_url):
    start = time.time() + 1.5  # both processes are up by then
    first, second = in_two_processes(race_request, (database_url, start), (database_url, start))
    assert first == second and len(table_rows(engine, db.export_jobs)) == 1
    start = time.time() + 1.5
    claims = in_two_processes(race_claim, (database_url, "a", start), (database_url, "b", start))
    assert claims in (["a", None], [None, "b"])


def test_a_job_whose_worker_died_is_claimed_again_and_the_old_worker_loses_it(engine):
    exports.request(engine)
    now = time.time()
    dead = exports.claim(engine, "dead", now=now)
    assert exports.claim(engine, "alive", now=now + exports.STALE_SECONDS - 1) is None
    alive = exports.claim(engine, "alive", now=now + exports.STALE_SECONDS + 1)
    assert alive["id"] == dead["id"] and alive["attempts"] == 2
    with pytest.raises(exports.Lost):
        exports.beat(engine, dead, 1, 1)


class ClaimedDuringUpload(LocalStorage):
    """As if the worker stalled while uploading, long enough to be thought dead."""

    def __init__(self, root, engine) -> None:
        super().__init__(root)
        self.engine = engine

    def put_file(self, key, source):
        super().put_file(key, source)
        later = time.time() + exports.STALE_SECONDS + 1
        self.thief = exports.claim(self.engine, "alive", now=later)


def test_a_worker_that_lost_its_job_keeps_nothing_it_uploaded(engine, tmp_path):
    storage = ClaimedDuringUpload(tmp_path / "store", engine)
    exports.request(engine)
    slow = exports.claim(engine, "slow")
    with pytest.raises(exports.Lost):
        exports.build(engine, storage, slow)
    assert list(storage.list("exports/")) == []
    assert exports.find(engine, slow["id"])["state"] == "running"  # the other worker's now
    exports.build(engine, LocalStorage(storage.root), storage.thief)
    assert list(storage.list("exports/")) == [exports.zip_key(storage.thief)]


def test_a_job_that_keeps_losing_its_worker_fails(engine):
    exports.request(engine)
    now = time.time()
    for attempt in range(exports.MAX_ATTEMPTS):
        now += exports.STALE_SECONDS + 1
        assert exports.claim(engine, f"w{attempt}", now=now)["attempts"] == attempt + 1
    assert exports.claim(engine, "last", now=now + exports.STALE_SECONDS + 1) is None
    (job,) = [row._asdict() for row in table_rows(engine, db.export_jobs)]
    assert job["state"] == "failed" and "gave up" in job["error"] and job["active"] is None
    assert exports.request(engine)[1]  # a new export may start


class ImagesFail(LocalStorage):
    def __init__(self, root, error: Exception) -> None:
        super().__init__(root)
        self.error = error

    def get(self, key):
        if key.endswith(".png"):
            raise self.error
        return super().get(key)


def test_storage_away_queues_the_job_again_and_a_bug_fails_it(make_app, tmp_path):
    away = ImagesFail(tmp_path / "s", StorageUnavailable("S3 unreachable"))
    app = make_app(STORAGE=away, ADMIN_TOKEN=TOKEN)
    fill(app, 2)
    client = app.test_client()
    job_url = client.post("/api/dataset/exports", headers=ADMIN).json["url"]
    work(app)
    job = client.get(job_url, headers=ADMIN).json
    assert job["state"] == "queued" and "S3 unreachable" in job["error"]
    away.error = ValueError("a bug")
    work(app)
    job = client.get(job_url, headers=ADMIN).json
    assert job["state"] == "failed" and "a bug" in job["error"] and "download" not in job
    assert list(away.list("exports/")) == []  # nothing half-saved


def test_old_exports_are_deleted_with_their_zips(engine, tmp_path):
    storage = LocalStorage(tmp_path / "store")
    now = time.time()
    made = []
    for i in range(exports.KEEP_LAST + 2):
        exports.request(engine, now=now + i)
        job = exports.claim(engine, "w", now=now + i)
        exports.build(engine, storage, job)
        made.append(job["id"])
    exports.prune(engine, storage, now=now + 10)
    kept = {row.id for row in table_rows(engine, db.export_jobs)}
    assert kept == set(made[-exports.KEEP_LAST :])
    assert len(list(storage.list("exports/"))) == exports.KEEP_LAST
    exports.prune(engine, storage, now=now + exports.KEEP_SECONDS + 100)
    assert table_rows(engine, db.export_jobs) == [] and list(storage.list("exports/")) == []


def test_the_active_column_allows_one_active_job(engine):
    exports.request(engine)
    with pytest.raises(sa.exc.IntegrityError), db.writing(engine) as conn:
        conn.execute(db.export_jobs.insert().values(exports.new_row(UNKNOWN, time.time())))


def test_the_exports_command_builds_the_queued_job(make_app):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 3)
    runner = app.test_cli_runner()
    assert "nothing queued" in runner.invoke(args=["exports", "--once"]).output
    job_id = app.test_client().post("/api/dataset/exports", headers=ADMIN).json["id"]
    result = runner.invoke(args=["exports", "--once"])
    assert result.exit_code == 0 and f"{job_id} done, 3 drawings" in result.output


@pytest.mark.parametrize("started_by", ["exports", "the trainer"])
def test_the_export_thread_builds_a_job_and_stops(make_app, started_by):
    app = make_app(ADMIN_TOKEN=TOKEN)
    fill(app, 2)
    client = app.test_client()
    job_url = client.post("/api/dataset/exports", headers=ADMIN).json["url"]
    if started_by == "the trainer":  # its first poll is at once
        with app.app_context():
            stop = cli_trainer.start_exports()
    else:
        stop = exports.start_thread(db.engine_of(app), app.extensions["storage"], interval=0.05)
    try:
        deadline = time.monotonic() + 20
        while client.get(job_url, headers=ADMIN).json["state"] != "done":
            assert time.monotonic() < deadline, "the thread did not build the export"
            time.sleep(0.05)
    finally:
        stop.set()
