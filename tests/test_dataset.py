"""The dataset API, the admin guard and the `flask dataset` commands."""

from __future__ import annotations

import io
import zipfile

import pytest

from digits import dataset
from digits.storage import LocalStorage, StorageError, StorageUnavailable
from tests.helpers import CountingStorage, drawing_png, save_indexed


def save(client, url, digit):
    response = client.post("/hook", data={"imageBase64": url, "digit": str(digit)})
    assert response.status_code == 201
    return response.json["name"]


def test_counts_include_drawings_that_are_not_digits(app, client, drawing_url):
    save(client, drawing_url, 3)
    save_indexed(app, drawing_png(), "none", "feedback")
    body = client.get("/api/dataset/counts").json
    assert body["counts"]["none"] == 1 and body["counts"]["3"] == 1
    assert sum(body["counts"].values()) == body["total"] == 2


def test_the_gallery_reads_nothing_from_storage_and_the_export_reads_in_parallel(
    tmp_path, make_app
):
    storage = CountingStorage(tmp_path / "s")
    app = make_app(STORAGE=storage)
    for i in range(40):
        save_indexed(app, drawing_png(), str(i % 10))
    storage.read = []
    page = app.test_client().get("/api/dataset?per_page=40").json
    assert len(page["items"]) == 40
    assert storage.read == []  # the page comes from the database's index
    storage.read, storage.most = [], 0
    assert dataset.write_zip(storage, io.BytesIO()) == 40
    assert sum(key.endswith(".png") for key in storage.read) == 40  # each image once
    assert storage.most > 1


def test_counts_and_gallery(client, drawing_url):
    names = [save(client, drawing_url, d) for d in (3, 3, 5)]
    counts = client.get("/api/dataset/counts").json
    assert counts["counts"]["3"] == 2 and counts["counts"]["5"] == 1 and counts["total"] == 3
    page = client.get("/api/dataset?label=3").json
    assert page["total"] == 2 and {i["name"] for i in page["items"]} == set(names[:2])
    image = client.get(page["items"][0]["url"])
    assert image.status_code == 200 and image.data == drawing_png()


def test_gallery_pages_newest_first(client, drawing_url):
    names = [save(client, drawing_url, 1) for _ in range(5)]
    first = client.get("/api/dataset?per_page=2&page=1").json
    third = client.get("/api/dataset?per_page=2&page=3").json
    assert first["pages"] == 3 and first["total"] == 5
    assert [i["name"] for i in first["items"]] == names[::-1][:2]
    assert [i["name"] for i in third["items"]] == names[:1]


def test_gallery_rejects_bad_label(client):
    assert client.get("/api/dataset?label=12").status_code == 400


HUGE = "9" * 5000  # more digits than Python's int() converts


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-5",
        "page=two",
        "per_page=abc",
        "per_page=201",
        f"page={HUGE}",
        f"per_page={HUGE}",
    ],
)
def test_gallery_rejects_bad_paging(client, query):
    response = client.get(f"/api/dataset?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json["error"]


def test_a_long_page_that_is_not_a_number_is_called_so_not_too_large(client):
    response = client.get(f"/api/dataset?page={'x' * 40}")
    assert response.status_code == 400
    assert response.json["error"] == "page must be a whole number from 1"
    response = client.get(f"/api/dataset?page={'9' * 40}")
    assert response.json["error"] == "page is too large"


def test_unknown_image_is_404(client, drawing_url):
    save(client, drawing_url, 7)  # its folder exists: a look-up there reaches the disk
    assert client.get("/api/dataset/image/7_nope_abc").status_code == 404
    assert client.get("/api/dataset/image/..%2Fetc").status_code == 404
    # Longer than a file name can be: still just not a drawing of ours.
    assert client.get(f"/api/dataset/image/7_{'a' * 300}").status_code == 404


@pytest.fixture
def admin_client(make_app):
    return make_app(ADMIN_TOKEN="s3cret").test_client()


def test_a_range_past_the_end_gets_416_with_content_range(client, drawing_url):
    name = save(client, drawing_url, 7)
    response = client.get(f"/api/dataset/image/{name}", headers={"Range": "bytes=99999-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"].startswith("bytes */")


def test_images_are_revalidated_so_a_deleted_one_is_gone(admin_client, drawing_url):
    """Browsers keep an image but ask again each time: unchanged is a 304, deleted a 404."""
    name = save(admin_client, drawing_url, 7)
    url = f"/api/dataset/image/{name}"
    first = admin_client.get(url)
    assert first.status_code == 200 and first.data.startswith(b"\x89PNG")
    # As the gallery's pages (digits/public.py): anyone may keep it, after asking each time.
    assert set(first.headers["Cache-Control"].split(", ")) == {"public", "no-cache"}
    etag = first.headers["ETag"]
    storage = admin_client.application.extensions["storage"]
    read = []
    real_get = storage.get
    storage.get = lambda key: read.append(key) or real_get(key)
    again = admin_client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert set(again.headers["Cache-Control"].split(", ")) == {"public", "no-cache"}
    assert read == [dataset.meta_key(name)]  # the PNG itself is not read for a 304
    other = admin_client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data
    right = {"Authorization": "Bearer s3cret"}
    assert admin_client.delete(f"/api/dataset/{name}", headers=right).status_code == 200
    assert admin_client.get(url, headers={"If-None-Match": etag}).status_code == 404


def test_if_match_is_checked_before_if_none_match_and_range(client, drawing_url):
    """RFC 9110 13.2.2: a failed If-Match is a 412 (in JSON), never a 304 nor the PNG."""
    name = save(client, drawing_url, 7)
    url = f"/api/dataset/image/{name}"
    first = client.get(url)
    etag = first.headers["ETag"]
    for failing in ({"If-Match": '"nope"'}, {"If-Match": f"W/{etag}"}):  # strong comparison
        for extra in ({}, {"If-None-Match": etag}, {"Range": "bytes=0-9"}):
            refused = client.get(url, headers={**failing, **extra})
            assert refused.status_code == 412, (failing, extra)
            assert "If-Match" in refused.json["error"]
    for passing in (etag, "*", f'"nope", {etag}'):
        assert client.get(url, headers={"If-Match": passing}).data == first.data
        both = client.get(url, headers={"If-Match": passing, "If-None-Match": etag})
        assert both.status_code == 304 and both.data == b""
        part = client.get(url, headers={"If-Match": passing, "Range": "bytes=0-9"})
        assert part.status_code == 206 and part.data == first.data[:10]
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"x"'}).data == first.data


def test_deleting_a_name_too_long_to_be_ours_is_404(admin_client, drawing_url):
    save(admin_client, drawing_url, 7)
    right = {"Authorization": "Bearer s3cret"}
    assert admin_client.delete(f"/api/dataset/7_{'a' * 300}", headers=right).status_code == 404


def test_a_delete_that_stopped_halfway_is_finished_by_a_retry(admin_client, drawing_url):
    name = save(admin_client, drawing_url, 7)
    storage = admin_client.application.extensions["storage"]
    real_delete = storage.delete

    def image_delete_fails(key):
        if key.endswith(".png"):
            raise StorageUnavailable("S3 is down")
        real_delete(key)

    right = {"Authorization": "Bearer s3cret"}
    storage.delete = image_delete_fails
    response = admin_client.delete(f"/api/dataset/{name}", headers=right)
    assert response.status_code == 503
    assert "nothing was saved" not in response.json["error"]  # a delete, not a save
    assert admin_client.get("/api/dataset/counts").json["total"] == 0  # no longer visible
    storage.delete = real_delete
    assert admin_client.delete(f"/api/dataset/{name}", headers=right).status_code == 200
    assert list(storage.list("drawings/")) == []
    assert admin_client.delete(f"/api/dataset/{name}", headers=right).status_code == 404


def test_admin_endpoints_are_off_without_token(client, drawing_url):
    name = save(client, drawing_url, 4)
    assert client.get("/api/dataset/export").status_code == 403
    assert client.delete(f"/api/dataset/{name}").status_code == 403
    assert client.get("/api/dataset/counts").json["total"] == 1


def test_admin_endpoints_need_the_right_token(admin_client, drawing_url):
    name = save(admin_client, drawing_url, 4)
    assert admin_client.delete(f"/api/dataset/{name}").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert admin_client.delete(f"/api/dataset/{name}", headers=wrong).status_code == 403
    right = {"Authorization": "Bearer s3cret"}
    assert admin_client.delete(f"/api/dataset/{name}", headers=right).json == {
        "deleted": True,
        "name": name,
    }
    assert admin_client.get("/api/dataset/counts").json["total"] == 0
    assert admin_client.delete(f"/api/dataset/{name}", headers=right).status_code == 404


def test_cli_stats_and_export(client, runner, drawing_url, tmp_path):
    for digit in (2, 2, 7):
        save(client, drawing_url, digit)
    result = runner.invoke(args=["dataset", "stats"])
    assert result.exit_code == 0
    lines = dict(line.split() for line in result.output.splitlines()[2:])
    assert lines["2"] == "2" and lines["7"] == "1" and lines["total"] == "3"
    out = tmp_path / "export.zip"
    result = runner.invoke(args=["dataset", "export", str(out)])
    assert result.exit_code == 0 and "wrote 3 drawings" in result.output
    archive = zipfile.ZipFile(out)
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 3
    assert "labels.csv" in archive.namelist()


def test_cli_stats_counts_from_the_index_not_a_listing(make_app):
    app = make_app()
    for label in ("2", "2", "7", "none"):
        save_indexed(app, drawing_png(), label)
    storage, listed = app.extensions["storage"], []
    storage.list = lambda prefix="": listed.append(prefix) or iter(())
    result = app.test_cli_runner().invoke(args=["dataset", "stats"])
    assert result.exit_code == 0 and listed == []
    lines = dict(line.split() for line in result.output.splitlines()[2:])
    assert (lines["2"], lines["7"], lines["none"], lines["total"]) == ("2", "1", "1", "4")


def test_cli_export_takes_the_names_from_the_index_not_a_listing(make_app, tmp_path):
    """As the admin API's exports: at 50k drawings on S3 listing storage was the slow part."""
    app = make_app()
    names = [save_indexed(app, drawing_png(), label) for label in ("2", "2", "7", "none")]
    storage, listed = app.extensions["storage"], []
    storage.list = lambda prefix="": listed.append(prefix) or iter(())
    out = tmp_path / "export.zip"
    result = app.test_cli_runner().invoke(args=["dataset", "export", str(out)])
    assert result.exit_code == 0 and f"wrote 4 drawings to {out}" in result.output
    assert listed == [] and not out.with_name("export.zip.part").exists()
    with zipfile.ZipFile(out) as archive:
        files = sorted(n for n in archive.namelist() if n != "labels.csv")
    assert files == sorted(f"{dataset.label_of(n)}/{n}.png" for n in names)


class MetadataRefused(LocalStorage):
    """A disk that takes every PNG and refuses every metadata file."""

    def put(self, key, data, **kwargs):
        if key.endswith(".json"):
            raise StorageError("disk full")
        return super().put(key, data, **kwargs)


def test_a_failed_save_leaves_no_half(tmp_path):
    storage = MetadataRefused(tmp_path / "s")
    with pytest.raises(StorageError):
        dataset.save_drawing(storage, drawing_png(), "3", "collect")
    assert list(storage.list("drawings/")) == []


def test_a_failed_copy_keeps_the_png_another_copy_committed(tmp_path):
    name = dataset.name_for_prediction("3", "p1")
    done = dataset.save_drawing(LocalStorage(tmp_path / "s"), drawing_png(), "3", "copy", name=name)
    with pytest.raises(StorageError):  # a second copy of the same drawing, at the same time
        dataset.save_drawing(MetadataRefused(tmp_path / "s"), drawing_png(), "3", "copy", name=name)
    assert dataset.image(LocalStorage(tmp_path / "s"), done) == drawing_png()


def test_the_largest_page_number_is_an_empty_page(client, drawing_url):
    save(client, drawing_url, 4)
    response = client.get("/api/dataset?page=999999999999999999&per_page=200")
    assert response.status_code == 200  # its OFFSET alone would be past SQL's integers
    assert response.json == {"items": [], "page": 999999999999999999, "pages": 1, "total": 1}
