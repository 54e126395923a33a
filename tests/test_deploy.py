"""Deploy files agree with each other and with the design."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_python_version_alone_names_a_minor_the_buildpack_supports():
    """runtime.txt is deprecated (the buildpack warns on every build, Fir refuses it) and would
    be read before .python-version. Only the minor: Heroku builds its newest patch release, with
    the security fixes. 3.13 because tensorflow-cpu 2.21.0 has no 3.14 wheel
    (scripts/python_wheels.py asks the index)."""
    assert not (ROOT / "runtime.txt").exists()
    version = (ROOT / ".python-version").read_text().strip()
    major, minor = version.split(".")
    assert major == "3" and 10 <= int(minor) <= 14, version  # the buildpack's 3.10-3.14


def test_procfile_serves_the_factory_with_gunicorn():
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert "web: gunicorn 'main:create_app()'" in lines


def test_requirements_are_pinned_and_use_tensorflow_cpu():
    lines = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert all("==" in line for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert "tensorflow-cpu" in names and "tensorflow" not in names
    assert {"flask", "flask-cors", "boto3", "numpy", "pillow", "gunicorn"} <= names


def test_importing_main_loads_no_tensorflow_boto3_or_model():
    code = (
        "import sys, main; "
        "mods = ('tensorflow', 'boto3', 'keras', 'ai_edge_litert'); "
        "bad = [m for m in mods if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


GUNICORN_SETTING = """
import sys
from gunicorn.app.wsgiapp import WSGIApplication

sys.argv = ["gunicorn", "main:create_app()"]  # as the Procfile; reads ./gunicorn.conf.py
print(",".join(WSGIApplication().cfg.forwarded_allow_ips))
"""


@pytest.mark.parametrize(
    ("env", "trusted"),
    [
        ({}, "127.0.0.1,::1"),  # gunicorn's default: anyone else could set X-Forwarded-Proto
        ({"DYNO": "web.1"}, "*"),  # only Heroku's router reaches a dyno
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, "10.0.0.0/8"),
        ({"DYNO": "web.1", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, "10.0.0.0/8"),
    ],
)
def test_gunicorn_trusts_forwarded_headers_from_anyone_only_on_heroku(env, trusted):
    clean = {k: v for k, v in os.environ.items() if k not in ("DYNO", "FORWARDED_ALLOW_IPS")}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_SETTING],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == trusted
