"""The settings table in digits/config.py is what the README and app.json document."""

from __future__ import annotations

import json
import re

from digits.config import SETTINGS
from tests.helpers import ROOT

# A row of the README's table: | `NAME` (, `NAME`…) | default | meaning |
_ROW = re.compile(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| ([^|]*) \|", re.MULTILINE)


def readme_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for names, default in _ROW.findall(section):
        for name in re.findall(r"`([A-Z_]+)`", names):
            rows[name] = default.strip()
    return rows


def test_the_readme_documents_every_setting_with_its_default():
    rows = readme_rows()
    for setting in SETTINGS:
        assert setting.name in rows, f"README's Configuration lacks {setting.name}"
        if isinstance(setting.default, str) and setting.default:
            assert f"`{setting.default}`" in rows[setting.name], setting.name


def test_app_json_offers_only_known_settings_with_their_defaults():
    env = json.loads((ROOT / "app.json").read_text())["env"]
    table = {setting.name: setting for setting in SETTINGS}
    boto3 = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert set(env) - boto3 <= set(table), "app.json names a setting the app does not read"
    for name, entry in env.items():
        if name in table and "value" in entry:
            assert entry["value"] == table[name].default, name
