"""Deploy files agree with each other and with the design."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_runtime_txt_and_python_version_agree_on_a_major_version():
    """Only the major version: Heroku builds the newest patch release of it, which exists on
    every stack it supports (an old patch such as 3.11.7 need not, and then the build fails)
    and carries the security fixes. pyenv resolves "3.11" to the newest installed 3.11.x."""
    runtime = (ROOT / "runtime.txt").read_text().strip()
    python_version = (ROOT / ".python-version").read_text().strip()
    assert runtime == f"python-{python_version}"
    assert python_version.count(".") == 1 and python_version.startswith("3."), python_version


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
