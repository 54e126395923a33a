"""glibc's malloc settings: the web's (keep buffers) and the trainer's (few arenas)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")


@pytest.mark.parametrize("settings", ["keep_buffers", "for_training"])
def test_glibc_takes_the_settings(settings):
    # In a child: the settings last for the whole process, and this one runs every test.
    code = f"from digits import malloc; print(malloc.{settings}())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "True"
