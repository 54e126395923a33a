"""Shared fixtures, in the style of Flask's tutorial: app, client, runner, plus a real S3 server."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from digits.storage import LocalStorage, open_storage
from main import create_app

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Digits of another script: a plain regex \d matches them, and no storage key may hold them.
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def app(storage_dir: Path):
    return create_app({"TESTING": True, "STORAGE_URL": str(storage_dir)})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class S3Server:
    """moto's standalone server: real HTTP on 127.0.0.1, started and stopped by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        moto = shutil.which("moto_server", path=str(BIN)) or "moto_server"
        self.process = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def s3_server():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = S3Server()
    server.start()
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="digits-test")
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server) -> str:
    """A fresh prefix in the test bucket, so tests never see each other's objects."""
    return f"s3://digits-test/run-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_app(s3_server, s3_url):
    return create_app(
        {"TESTING": True, "STORAGE_URL": s3_url, "AWS_ENDPOINT_URL": s3_server.endpoint}
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    """The same storage tests, once on a local folder and once on S3 over HTTP."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return open_storage(request.getfixturevalue("s3_url"), server.endpoint)


def drawing_png(
    lines=(((60, 40), (140, 40), (90, 170)),),
    width: int = 16,
    mode: str = "RGB",
    ground: str | tuple | None = None,
) -> bytes:
    """A 200×200 image with black strokes; `ground` defaults to white (clear white for RGBA).

    What the page sends is mode="RGBA", ground="white": opaque grey pixels.
    """
    background = ground or ((255, 255, 255, 0) if mode == "RGBA" else "white")
    image = Image.new(mode, (200, 200), background)
    draw = ImageDraw.Draw(image)
    for points in lines:
        draw.line(points, fill="black", width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture
def drawing_url() -> str:
    return data_url(drawing_png())


def start_gunicorn(port: int, storage_dir: Path, models_dir: Path, **settings: str):
    """gunicorn as in production (it reads gunicorn.conf.py from ROOT), with two workers."""
    env = {
        **os.environ,
        "STORAGE_URL": str(storage_dir),
        "MODELS_DIR": str(models_dir),
        "WEB_CONCURRENCY": "2",
        "LOG_REQUESTS": "off",
        **settings,
    }
    command = [str(BIN / "gunicorn"), "main:create_app()", "--bind", f"127.0.0.1:{port}"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return subprocess.Popen(command, cwd=ROOT, env=env, **quiet)


def worker_pids(master: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]
