"""One small storage interface with two backends: a local folder and Amazon S3.

Everything the app keeps (drawings, predictions, feedback, model versions) goes
through `Storage`, so the whole dataset and every model can be rebuilt from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from digits.settings import BadSetting

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*")


class StorageError(Exception):
    """Base class for storage failures."""


class NotFound(StorageError, KeyError):
    """The key does not exist."""


class PreconditionFailed(StorageError):
    """A conditional put lost: the object exists, or changed since it was read."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached; nothing was written."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    etag: str


class Storage(Protocol):
    url: str

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str:
        """Store and return the new etag. Raises PreconditionFailed if a condition fails.

        `durable=False` may skip the flush to disk: for records nobody was told were saved.
        """

    def get(self, key: str) -> Blob: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys starting with prefix, in sorted order."""

    def delete(self, key: str) -> None: ...

    def ping(self) -> None:
        """Raise StorageUnavailable if the backend cannot be reached."""

    def put_file(self, key: str, source: BinaryIO) -> None:
        """Store the rest of a file, read a block at a time: an export, too big for memory."""

    def open(self, key: str) -> BinaryIO:
        """The object as a file to read from, a block at a time (NotFound if missing)."""

    def download_url(self, key: str, seconds: int, filename: str) -> str | None:
        """A link anyone may GET the object from for `seconds`, saved as `filename`; None
        when the backend has no such links (a local folder: the app serves the file)."""


BLOCK = 1 << 20  # a streamed object's read and write size


def check_key(key: str) -> str:
    if not _KEY_PATTERN.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def etag_of(data: bytes) -> str:
    """MD5 hex, the same value S3 gives a single-part upload."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


_temp_numbers = itertools.count()


class LocalStorage:
    """A folder on disk. Writes are atomic (temp file, fsync, rename) and durable."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.resolve()}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str:
        path = self._path(key)
        with _disk_errors(key):
            tmp = self._write_temp(path, data, durable)
            try:
                if if_none_match:
                    self._link_new(tmp, path)
                elif if_match is not None:
                    self._replace_if_match(tmp, path, if_match)
                else:
                    os.replace(tmp, path)
                if durable:
                    _fsync_dir(path.parent)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return etag_of(data)

    def _write_temp(self, path: Path, data: bytes | BinaryIO, durable: bool) -> str:
        """A temp file beside `path` holding `data`, in a folder made if it is the first."""
        try:
            return self._write_temp_file(path, data, durable)
        except FileNotFoundError:  # the first key in its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return self._write_temp_file(path, data, durable)

    def _write_temp_file(self, path: Path, data: bytes | BinaryIO, durable: bool) -> str:
        # Unique without mkstemp's slower name loop; the random part covers a recycled pid
        # meeting the temp file its killed namesake left behind.
        tmp = f"{path.parent}/.tmp-{os.getpid()}-{next(_temp_numbers)}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in _blocks(data):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        return tmp

    def _link_new(self, tmp: str, path: Path) -> None:
        # link() fails if the target exists, atomically, even across processes.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PreconditionFailed(f"{path.name} already exists") from None

    def _replace_if_match(self, tmp: str, path: Path, expected: str) -> None:
        # A lock file serialises compare-and-swap between processes on this machine.
        with open(path.parent / f".lock-{path.name}", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = etag_of(path.read_bytes())
            except FileNotFoundError:
                raise PreconditionFailed(f"{path.name} does not exist") from None
            if current != expected:
                raise PreconditionFailed(f"{path.name} changed since it was read")
            os.replace(tmp, path)

    def get(self, key: str) -> Blob:
        with _disk_errors(key):
            try:
                data = self._path(key).read_bytes()
            # A key that names a folder holds no object, as on S3. A folder on the way that is
            # a file (NotADirectoryError), like any other failure, is the disk's: unavailable.
            except (FileNotFoundError, IsADirectoryError):
                raise NotFound(key) from None
        return Blob(data, etag_of(data))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / os.path.dirname(prefix) if "/" in prefix else self.root
        keys = []
        with _disk_errors(str(base)):
            for dirpath, dirnames, filenames in os.walk(base, onerror=_raise_unless_missing):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    key = name if rel == "." else f"{rel}/{name}"
                    if not name.startswith(".") and key.startswith(prefix):
                        keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        with _disk_errors(key), contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def put_file(self, key: str, source: BinaryIO) -> None:
        path = self._path(key)
        with _disk_errors(key):
            tmp = self._write_temp(path, source, durable=True)
            try:
                os.replace(tmp, path)  # whole or not at all, as put's
                _fsync_dir(path.parent)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def open(self, key: str) -> BinaryIO:
        with _disk_errors(key):
            try:
                return self._path(key).open("rb")
            except (FileNotFoundError, IsADirectoryError):
                raise NotFound(key) from None

    def download_url(self, key: str, seconds: int, filename: str) -> str | None:
        return None  # a folder has no links of its own: the app's download route serves it

    def ping(self) -> None:
        with _disk_errors(str(self.root)):
            self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"{self.root} is not writable")


@contextlib.contextmanager
def _disk_errors(key: str) -> Iterator[None]:
    """The disk's own failures (full, read-only, no permission, its folder a file) as
    StorageUnavailable, as S3's are: callers answer 503, and nothing counts as saved."""
    try:
        yield
    except OSError as e:
        raise StorageUnavailable(f"{key}: {e.strerror or e}") from e


def _blocks(data: bytes | BinaryIO) -> Iterator[bytes]:
    """`data` itself, or a file's remaining bytes a block at a time."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield data
        return
    while block := data.read(BLOCK):
        yield block


def _raise_unless_missing(error: OSError) -> None:
    """os.walk's errors, which it would skip: a folder not made yet holds nothing (a first run),
    but one that is a file or cannot be read must not read as empty."""
    if not isinstance(error, FileNotFoundError):
        raise error


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Storage:
    """An S3 bucket and prefix. The boto3 client is made on first use, not at import."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        # boto3.client's keys and region (a storage add-on's, digits/addons.py); without them
        # boto3 finds its own (AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, ...).
        self.credentials = credentials or {}
        self.url = f"s3://{bucket}/{self.prefix}"
        self._client = None
        self._making_client = threading.Lock()

    @property
    def client(self):
        if self._client is None:
            # One client, made once: threads that make their first call together (an export's
            # readers) would each make their own, at about 12 MB apiece.
            with self._making_client:
                if self._client is None:
                    self._client = self._new_client()
        return self._client

    def _new_client(self):
        import boto3
        from botocore.config import Config

        # Short timeouts and one retry: a hung backend turns into a 503 after two tries of
        # 3 s, well inside Heroku's 30 s. (botocore's "max_attempts" counts retries only,
        # so it meant three tries; "total_max_attempts" counts them all.)
        retries = {"total_max_attempts": 2, "mode": "standard"}
        # s3v4 for presigned links too: botocore would sign those with SigV2 in the older
        # regions, which buckets made since 2020 refuse.
        config = Config(
            connect_timeout=2, read_timeout=3, retries=retries, signature_version="s3v4"
        )
        return boto3.client("s3", endpoint_url=self.endpoint_url, config=config, **self.credentials)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str:
        # Every S3 write is durable once acknowledged, so `durable` changes nothing here.
        args = {"Bucket": self.bucket, "Key": self.prefix + check_key(key), "Body": data}
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        try:
            with _translate_errors(key):
                response = self.client.put_object(**args)
        except NotFound:
            # S3 answers 404 to IfMatch on a missing key; to callers it is a lost condition.
            raise PreconditionFailed(f"{key} does not exist") from None
        except PreconditionFailed:
            if not self._holds(key, data):
                raise
            return etag_of(data)
        return response["ETag"].strip('"')

    def _holds(self, key: str, data: bytes) -> bool:
        """Whether `key` holds exactly `data`. When a reply is lost, botocore sends the put again,
        and the condition then fails on our own first attempt, which did land."""
        try:
            return self.get(key).data == data
        except NotFound:
            return False

    def get(self, key: str) -> Blob:
        with _translate_errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            data = response["Body"].read()
        return Blob(data, response["ETag"].strip('"'))

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _translate_errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def delete(self, key: str) -> None:
        with _translate_errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + check_key(key))

    def put_file(self, key: str, source: BinaryIO) -> None:
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig

        # A multipart upload past 8 MB, with 4 parts in flight: about 32 MB of buffers, whatever
        # the file's size. S3 shows the object only once every part is in.
        config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
        try:
            with _translate_errors(key):
                self.client.upload_fileobj(
                    source, self.bucket, self.prefix + check_key(key), Config=config
                )
        except S3UploadFailedError as e:  # boto3 wraps the ClientError of a failed part
            raise StorageUnavailable(f"S3 upload of {key} failed: {e}") from e

    def open(self, key: str) -> BinaryIO:
        with _translate_errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        return response["Body"]  # botocore's StreamingBody: read() a block at a time

    def download_url(self, key: str, seconds: int, filename: str) -> str | None:
        """A presigned GET: signing happens here, with no request to S3 (on the endpoint of
        AWS_ENDPOINT_URL when it is set, as every other call)."""
        params = {
            "Bucket": self.bucket,
            "Key": self.prefix + check_key(key),
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        with _translate_errors(key):
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=seconds
            )

    def ping(self) -> None:
        try:
            with _translate_errors(""):
                self.client.head_bucket(Bucket=self.bucket)
        except NotFound:  # no such bucket: nothing can be stored
            raise StorageUnavailable(f"bucket {self.bucket} does not exist") from None


class _translate_errors:
    """Map botocore's exceptions onto the storage ones, so callers need not know S3."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, StorageError):
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(self.key) from exc
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise PreconditionFailed(f"{self.key}: {code}") from exc
            raise StorageUnavailable(f"S3 error {code} on {self.key}") from exc
        if isinstance(exc, BotoCoreError):
            raise StorageUnavailable(f"S3 unreachable: {exc}") from exc
        return False


def open_storage(
    url: str, endpoint_url: str | None = None, credentials: dict[str, str] | None = None
) -> Storage:
    """`s3://bucket/prefix` selects S3 (reached with `credentials` when given); a plain path or
    `file://path` selects a local folder. Any other STORAGE_URL raises BadSetting."""
    parsed = urlparse(check_url(url))
    if parsed.scheme == "s3":
        return S3Storage(parsed.netloc, parsed.path, endpoint_url, credentials)
    if parsed.scheme == "file":
        return LocalStorage(parsed.path)
    return LocalStorage(url)


def check_url(url: str) -> str:
    """The STORAGE_URL itself, if open_storage knows it; else BadSetting that says why."""
    parsed = urlparse(url)
    if parsed.scheme == "s3" and not parsed.netloc:
        raise BadSetting(f"STORAGE_URL has no bucket: {url!r}")
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        # file://folder/x would quietly be /x
        raise BadSetting(f"a file:// STORAGE_URL needs an absolute path (file:///…): {url!r}")
    if parsed.scheme not in ("s3", "file") and len(parsed.scheme) > 1:
        raise BadSetting(f"unsupported STORAGE_URL scheme: {parsed.scheme!r}")
    return url
