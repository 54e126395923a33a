"""The command-line tools fail with one clear line: no tracebacks for a person's mistakes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from main import create_app
from tests.conftest import BIN, ROOT, free_port


@pytest.fixture
def broken_runner(tmp_path):
    """Storage whose folder is a file: every write fails."""
    (tmp_path / "file").write_text("not a folder")
    app = create_app({"TESTING": True, "STORAGE_URL": str(tmp_path / "file" / "storage")})
    return app.test_cli_runner()


def test_unavailable_storage_is_one_line(broken_runner):
    result = broken_runner.invoke(args=["models", "rollback", "original"])
    assert result.exit_code == 1
    assert "Error: storage is unavailable" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["models", "list"], ["dataset", "stats"]])
def test_reading_unavailable_storage_is_one_line_not_an_empty_answer(broken_runner, args):
    result = broken_runner.invoke(args=args)
    assert result.exit_code == 1
    assert "Error: storage is unavailable" in result.output
    assert "Traceback" not in result.output


def test_export_into_a_missing_folder_is_one_line(runner, tmp_path):
    result = runner.invoke(args=["dataset", "export", str(tmp_path / "nowhere" / "out.zip")])
    assert result.exit_code == 1
    assert "Error: no folder" in result.output
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["trainer", "--once", "--interval", "-1"],
        ["trainer", "--once", "--margin", "-0.5"],
        ["trainer", "--once", "--learning-rate", "0"],
        ["trainer", "--once", "--learning-rate", "nan"],
        ["train", "--limit", "-5"],
        ["train", "--limit", "0"],
        ["train", "--epochs", "0"],
    ],
)
def test_numbers_out_of_range_are_refused_before_anything_runs(tmp_path, args):
    # Were a value let through, nothing is harmed: the trainer runs once (--once), not forever,
    # and a training writes into a scratch folder, never into the shipped models/.
    settings = {"STORAGE_URL": str(tmp_path / "s"), "MODELS_DIR": str(tmp_path / "models")}
    result = create_app({"TESTING": True, **settings}).test_cli_runner().invoke(args=args)
    assert result.exit_code == 2  # click's usage error: nothing was trained or changed
    assert "Invalid value" in result.output


FLASK = [sys.executable, "-m", "flask", "--app", "main"]
ENTRY_POINTS = {
    "flask command": [*FLASK, "models", "list"],
    "flask help": [*FLASK, "--help"],
    "flask run": [*FLASK, "run", "--port", "{port}"],
    "make run": [sys.executable, "-m", "digits.local"],
    "gunicorn": [str(BIN / "gunicorn"), "main:create_app()", "--bind", "127.0.0.1:{port}"],
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [("s3://", "STORAGE_URL has no bucket"), ("ftp://x", "unsupported STORAGE_URL scheme")],
)
def test_a_malformed_storage_url_stops_every_entry_point_with_one_line(entry_point, url, problem):
    port = str(free_port())
    command = [part.replace("{port}", port) for part in ENTRY_POINTS[entry_point]]
    env = {**os.environ, "STORAGE_URL": url, "PORT": port, "WEB_CONCURRENCY": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"Error: {problem}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Error:") == 1, result.stderr  # digits.local: not once per child
