"""What the two fuzz modules share: Hypothesis settings, content types, JSON values, the app."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.helpers import new_app

EXAMPLES = 1000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    "application/octet-stream",
    "image/png",
    "",
]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def make_fuzz_app(storage_dir: Path, **config):
    """No rate limits (the fuzz would hit them) and no request log (1,000 lines each).

    Its database sits beside its storage: the module-scoped fuzz apps are made before each
    test's own DATABASE_URL is set (conftest.database_file), and would otherwise make and fill
    the repository's instance/digits.sqlite3."""
    quiet = {
        "RATE_LIMIT_SAVES": "off",
        "RATE_LIMIT_FEEDBACK": "off",
        "RATE_LIMIT_READS": "off",
        "LOG_REQUESTS": "off",
    }
    config.setdefault("DATABASE_URL", f"sqlite:///{storage_dir.parent / 'digits.sqlite3'}")
    return new_app(storage_dir, **quiet, **config)
