"""The command-line tools fail with one clear line: no tracebacks for a person's mistakes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from digits import settings
from digits.config import SETTINGS, check_settings, text
from tests.helpers import BIN, ROOT, free_port


@pytest.fixture
def broken_runner(tmp_path, make_app):
    """Storage whose folder is a file: every write fails."""
    (tmp_path / "file").write_text("not a folder")
    app = make_app(STORAGE_URL=str(tmp_path / "file" / "storage"))
    return app.test_cli_runner()


def test_unavailable_storage_is_one_line(broken_runner):
    result = broken_runner.invoke(args=["models", "rollback", "original"])
    assert result.exit_code == 1
    assert "Error: storage is unavailable" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["models", "list"]])
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
def test_numbers_out_of_range_are_refused_before_anything_runs(tmp_path, make_app, args):
    # Were a value let through, nothing is harmed: the trainer runs once (--once), not forever,
    # and a training writes into a scratch folder, never into the shipped models/.
    app = make_app(MODELS_DIR=str(tmp_path / "models"))
    result = app.test_cli_runner().invoke(args=args)
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


def run_entry_point(entry_point: str, settings: dict) -> subprocess.CompletedProcess:
    port = str(free_port())
    command = [part.replace("{port}", port) for part in ENTRY_POINTS[entry_point]]
    env = {**os.environ, "PORT": port, "WEB_CONCURRENCY": "1", **settings}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess, line: str) -> None:
    assert result.returncode == 1
    assert line in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Error:") == 1, result.stderr  # digits.local: not once per child


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [("s3://", "STORAGE_URL has no bucket"), ("ftp://x", "unsupported STORAGE_URL scheme")],
)
def test_a_malformed_storage_url_stops_every_entry_point_with_one_line(entry_point, url, problem):
    assert_one_line(run_entry_point(entry_point, {"STORAGE_URL": url}), f"Error: {problem}")


ON_OFF = "use on or off"
RATE = "use N/second, N/minute, N/hour or off"
# Every setting create_app reads that can be malformed, with a value it must refuse.
MALFORMED_SETTINGS = [
    ("RATE_LIMIT_SAVES", "lots", RATE),
    ("RATE_LIMIT_FEEDBACK", "5/fortnight", RATE),
    ("RATE_LIMIT_FEEDBACK", "0/minute", RATE),
    ("TRUSTED_PROXY_HOPS", "x", "use a whole number, 0 or more"),
    ("TRUSTED_PROXY_HOPS", "-1", "use a whole number, 0 or more"),
    ("MODEL_POLL_SECONDS", "abc", "use a number of seconds above 0"),
    ("MODEL_POLL_SECONDS", "-2", "use a number of seconds above 0"),
    ("MODEL_POLL_SECONDS", "nan", "use a number of seconds above 0"),
    ("MODEL_POLL_SECONDS", "0", "use a number of seconds above 0"),
    ("LOG_REQUESTS", "maybe", ON_OFF),
    ("FAST_PREDICT", "perhaps", ON_OFF),
    ("MODEL_WATCH", "sometimes", ON_OFF),
    ("CORS_ORIGINS", "a.example", "use origins such as https://a.example, comma-separated"),
    ("CORS_ORIGINS", "https://a.example,https://b.example/page", "use origins such as"),
    ("CLOUDCUBE_URL", "cube42", "use https://BUCKET.s3.amazonaws.com/CUBE"),
    ("DATABASE_URL", "mysql://db.example/digits", "use sqlite:///path/to/file or postgres://"),
    ("DATABASE_URL", "not a url", "use sqlite:///path/to/file or postgres://"),
    ("PREDICTION_RETENTION", "0", "use a whole number, 1 or more"),
    ("PREDICTION_RETENTION", "a week", "use a whole number, 1 or more"),
    ("TRAINER_MIN_NEW", "0", "use a whole number, 1 or more"),
    ("TRAINER_MAX_WAIT", "1d", "use a number of seconds above 0"),
    ("KEEP_VERSIONS", "0", "use a whole number, 1 or more"),
    ("RATE_LIMIT_READS", "many", RATE),
    ("PUBLIC_READS", "two", "use a whole number, 0 or more"),
]


def test_settings_read_their_words_and_numbers():
    for on in (True, 1, "1", "on", "ON", "true", " yes "):
        assert settings.on_off("S", on) is True
    for off in (False, 0, "0", "off", "False", "no", ""):
        assert settings.on_off("S", off) is False
    assert settings.whole_number("S", "0") == 0 and settings.whole_number("S", 3, minimum=1) == 3
    assert settings.seconds("S", "0.5") == 0.5 and settings.seconds("S", 2) == 2.0
    for bad in ("", "1.5", "٣", "0"):  # not a whole number, or below the minimum
        with pytest.raises(settings.BadSetting, match="use a whole number, 1 or more"):
            settings.whole_number("S", bad, minimum=1)
    for bad in ("inf", "-inf", "", "1s"):
        with pytest.raises(settings.BadSetting, match="use a number of seconds above 0"):
            settings.seconds("S", bad)


def test_every_setting_that_can_be_malformed_has_a_malformed_case_below():
    parsed = {setting.name for setting in SETTINGS if setting.parse is not text}
    assert {name for name, _, _ in MALFORMED_SETTINGS} == parsed - {"STORAGE_URL"}


@pytest.mark.parametrize(("name", "value", "accepted"), MALFORMED_SETTINGS)
def test_a_malformed_setting_is_one_line_from_create_app_and_the_check(
    make_app, monkeypatch, name, value, accepted
):
    monkeypatch.setenv(name, value)
    line = f"Error: {name}={value!r}: {accepted}"
    with pytest.raises(SystemExit) as made:
        make_app()
    assert str(made.value.code).startswith(line)
    with pytest.raises(SystemExit) as checked:
        check_settings()
    assert checked.value.code == made.value.code


@pytest.mark.parametrize(
    ("entry_point", "name", "value", "line"),
    [
        ("flask command", "RATE_LIMIT_SAVES", "lots", f"Error: RATE_LIMIT_SAVES='lots': {RATE}"),
        ("flask command", "LOG_REQUESTS", "maybe", f"Error: LOG_REQUESTS='maybe': {ON_OFF}"),
        ("gunicorn", "FAST_PREDICT", "perhaps", f"Error: FAST_PREDICT='perhaps': {ON_OFF}"),
        ("gunicorn", "MODEL_POLL_SECONDS", "nan", "Error: MODEL_POLL_SECONDS='nan': use a"),
        ("make run", "TRUSTED_PROXY_HOPS", "x", "Error: TRUSTED_PROXY_HOPS='x': use a whole"),
        # gunicorn.conf.py's own settings
        ("gunicorn", "GUNICORN_THREADS", "abc", "Error: GUNICORN_THREADS='abc': use a whole"),
        ("gunicorn", "GUNICORN_WORKER_CONNECTIONS", "x", "Error: GUNICORN_WORKER_CONNECTIONS="),
        ("gunicorn", "WEB_CONCURRENCY", "0", "Error: WEB_CONCURRENCY='0': use a whole number, 1"),
    ],
)
def test_a_malformed_setting_stops_the_entry_points_with_one_line(entry_point, name, value, line):
    assert_one_line(run_entry_point(entry_point, {name: value}), line)
