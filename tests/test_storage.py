"""The storage interface, run against both backends: a local folder and S3 over HTTP."""

from __future__ import annotations

import socket
import threading

import pytest

from digits.storage import (
    LocalStorage,
    NotFound,
    PreconditionFailed,
    S3Storage,
    StorageUnavailable,
    open_storage,
)


def test_put_get_roundtrip(store):
    etag = store.put("a/b.txt", b"hello")
    blob = store.get("a/b.txt")
    assert blob.data == b"hello"
    assert blob.etag == etag


def test_get_missing_raises_not_found(store):
    with pytest.raises(NotFound):
        store.get("missing/key")


def test_list_by_prefix_is_sorted_and_filtered(store):
    for key in ["x/2", "x/1", "y/1", "x/sub/3"]:
        store.put(key, b".")
    assert list(store.list("x/")) == ["x/1", "x/2", "x/sub/3"]
    assert list(store.list("y")) == ["y/1"]
    assert list(store.list("nothing/")) == []


def test_delete(store):
    store.put("k", b"v")
    store.delete("k")
    with pytest.raises(NotFound):
        store.get("k")
    store.delete("k")  # deleting twice is fine


def test_if_none_match_refuses_to_overwrite(store):
    store.put("pointer", b"one", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("pointer", b"two", if_none_match=True)
    assert store.get("pointer").data == b"one"


def test_if_match_is_compare_and_swap(store):
    first = store.put("pointer", b"v1")
    second = store.put("pointer", b"v2", if_match=first)
    with pytest.raises(PreconditionFailed):
        store.put("pointer", b"v3", if_match=first)
    assert store.get("pointer").data == b"v2"
    assert store.get("pointer").etag == second


def test_if_match_on_missing_key_fails(store):
    with pytest.raises(PreconditionFailed):
        store.put("absent", b"x", if_match="0" * 32)


def test_concurrent_conditional_puts_have_one_winner(store):
    winners = []

    def claim(i: int) -> None:
        try:
            store.put("claim", str(i).encode(), if_none_match=True)
            winners.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get("claim").data == str(winners[0]).encode()


def test_keys_that_escape_are_refused(store):
    for bad in ["../etc/passwd", "/abs", "a//b", "a/../b", "", "a/b\n", "\u0661/b"]:
        with pytest.raises(ValueError):
            store.put(bad, b"x")


def test_local_write_leaves_no_temp_files(tmp_path):
    store = LocalStorage(tmp_path)
    store.put("d/k", b"x")
    with pytest.raises(PreconditionFailed):
        store.put("d/k", b"y", if_none_match=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if not p.name.startswith(".lock")) == [
        "k"
    ]


def test_a_failing_disk_is_unavailable(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = LocalStorage(tmp_path / "file" / "storage")  # the disk refuses everything here
    with pytest.raises(StorageUnavailable):
        store.put("d/k", b"x")
    with pytest.raises(StorageUnavailable):
        store.delete("d/k")
    with pytest.raises(StorageUnavailable, match="Not a directory"):
        store.get("d/k")  # a broken disk, not a missing key: 503, not 404


def test_a_key_that_names_a_folder_is_missing(store):
    store.put("a/b", b"x")
    with pytest.raises(NotFound):  # "a" holds no object, as on S3
        store.get("a")


@pytest.mark.parametrize("root", ["file", "file/storage"])
def test_listing_a_storage_folder_that_is_a_file_is_unavailable(tmp_path, root):
    (tmp_path / "file").write_text("not a folder")
    store = LocalStorage(tmp_path / root)
    for prefix in ("", "drawings/"):
        with pytest.raises(StorageUnavailable, match="Not a directory"):
            list(store.list(prefix))


def test_a_storage_folder_not_made_yet_lists_empty(tmp_path):
    store = LocalStorage(tmp_path / "new" / "storage")
    assert list(store.list("")) == [] and list(store.list("drawings/3/")) == []


def test_open_storage_selects_backend(tmp_path):
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
    s3 = open_storage("s3://bucket/some/prefix")
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    with pytest.raises(ValueError):
        open_storage("ftp://host/x")
    assert open_storage(f"file://localhost{tmp_path}").root == tmp_path
    for relative in ("file://instance/storage", "file://relative"):
        with pytest.raises(ValueError, match="absolute path"):
            open_storage(relative)


@pytest.mark.s3
@pytest.mark.parametrize("condition", ["if_none_match", "if_match"])
def test_a_conditional_put_retried_after_a_lost_reply_succeeds(s3_server, s3_url, condition):
    store = open_storage(s3_url, s3_server.endpoint)
    before = store.put("d/k", b"old") if condition == "if_match" else None
    retried = []

    def lose_the_first_reply(attempts, caught_exception, **_):
        if not retried and caught_exception is None:  # it landed; botocore sends it again
            retried.append(attempts)
            return 0

    store.client.meta.events.register_first("needs-retry.s3.PutObject", lose_the_first_reply)
    conditions = {"if_none_match": True} if before is None else {"if_match": before}
    store.put("d/k", b"new", **conditions)
    assert retried and store.get("d/k").data == b"new"
    with pytest.raises(PreconditionFailed):  # a real conflict is still one
        store.put("d/k", b"other", **conditions)


@pytest.mark.s3
def test_a_missing_bucket_is_unavailable(s3_server, make_app):
    store = S3Storage("no-such-bucket", endpoint_url=s3_server.endpoint)
    with pytest.raises(StorageUnavailable):
        store.ping()
    app = make_app(STORAGE_URL="s3://no-such-bucket/x", AWS_ENDPOINT_URL=s3_server.endpoint)
    health = app.test_client().get("/healthz")
    assert health.status_code == 200 and health.json["storage"] == "unavailable"


class HungServer:
    """Accepts connections and never answers: an S3 that hangs. Counts the tries."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:  # closed
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


def test_a_hung_s3_is_unavailable_after_two_tries(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = HungServer()
    try:
        store = S3Storage("bucket", endpoint_url=server.endpoint)
        with pytest.raises(StorageUnavailable):
            store.put("k", b"v")
        assert len(server.accepted) == 2  # one try and one retry, of 3 s each
    finally:
        server.close()


def test_unreachable_s3_is_unavailable():
    store = S3Storage("bucket", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable):
        store.put("k", b"v")
    with pytest.raises(StorageUnavailable):
        store.ping()


# --- big objects, streamed (dataset exports) --------------------------------------------------


def test_a_file_is_stored_and_read_back_a_block_at_a_time(store, tmp_path, monkeypatch):
    from digits import storage as storage_module

    monkeypatch.setattr(storage_module, "BLOCK", 1000)  # several blocks even for a small file
    data = bytes(range(256)) * 40
    source = tmp_path / "export.zip"
    source.write_bytes(data)
    with source.open("rb") as file:
        store.put_file("exports/x.zip", file)
    with store.open("exports/x.zip") as file:
        assert file.read(100) == data[:100]  # a read of part, not the whole object
        assert file.read() == data[100:]
    with pytest.raises(NotFound):
        store.open("exports/missing.zip")


def test_a_local_download_url_is_none_and_an_s3_one_works_over_http(store):
    import urllib.request

    store.put("exports/x.zip", b"zip bytes")
    link = store.download_url("exports/x.zip", 60, "digits-dataset.zip")
    if isinstance(store, LocalStorage):
        assert link is None  # the app's download route serves it
        return
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.read() == b"zip bytes"
        disposition = response.headers["Content-Disposition"]
        assert disposition == 'attachment; filename="digits-dataset.zip"'


def test_a_failed_upload_is_unavailable_and_leaves_nothing():
    import io

    store = S3Storage("bucket", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable):
        store.put_file("exports/x.zip", io.BytesIO(b"zip"))


def test_a_local_file_put_leaves_no_temp_file_when_the_source_fails(tmp_path):
    class Breaks:
        def read(self, size: int) -> bytes:
            raise OSError("the temporary file went away")

    store = LocalStorage(tmp_path / "s")
    with pytest.raises(StorageUnavailable):
        store.put_file("exports/x.zip", Breaks())
    assert [p.name for p in (tmp_path / "s" / "exports").iterdir()] == []


def test_threads_that_start_together_share_one_s3_client(monkeypatch):
    """An export's readers make their first calls together: one client, not one each."""
    import time

    store = S3Storage("bucket", endpoint_url="http://127.0.0.1:9")
    made = []
    real = store._new_client

    def slow_new_client():
        time.sleep(0.05)  # wide enough for every thread to arrive meanwhile
        made.append(real())
        return made[-1]

    monkeypatch.setattr(store, "_new_client", slow_new_client)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(store.client)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(client is made[0] for client in seen)
