"""Reading on/off settings, which come from app.config or, as strings, from the environment."""

from __future__ import annotations

OFF = ("0", "off", "false", "")


def is_on(value: object) -> bool:
    """False for False, 0 and the strings "0", "off", "false" or "" (any case); else True."""
    return str(value).lower() not in OFF
