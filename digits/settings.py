"""Reading settings, which come from app.config or, as strings, from the environment.

A value that cannot be used raises BadSetting, which every entry point turns into one
`Error: …` line and exit code 1 (`exit_on_bad_setting`), before anything is served.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator

ON = ("1", "on", "true", "yes")
OFF = ("0", "off", "false", "no", "")
_WHOLE_NUMBER = re.compile(r"\d+", re.ASCII)


class BadSetting(ValueError):
    """A setting's value that cannot be used; the message says which, and what would do."""


def refused(name: str, value: object, accepted: str) -> BadSetting:
    """e.g. `RATE_LIMIT_SAVES='lots': use N/second, N/minute, N/hour or off`."""
    return BadSetting(f"{name}={value!r}: use {accepted}")


@contextlib.contextmanager
def exit_on_bad_setting() -> Iterator[None]:
    """A BadSetting ends the process with `Error: …` and exit code 1, not a traceback.

    Also a decorator. SystemExit because flask prints a traceback for anything else raised
    while it loads the app for a command, and so does gunicorn for its config file.
    """
    try:
        yield
    except BadSetting as e:
        raise SystemExit(f"Error: {e}") from None


def on_off(name: str, value: object) -> bool:
    """True for True, 1 and "1", "on", "true", "yes"; False for False, 0 and "0", "off",
    "false", "no", "" (any case). Any other word is refused: it must not silently mean either."""
    word = str(value).strip().lower()
    if word not in ON + OFF:
        raise refused(name, value, "on or off")
    return word in ON


def whole_number(name: str, value: object, minimum: int = 0) -> int:
    """A count such as 3 or "3", at least `minimum`."""
    text = str(value).strip()
    if not _WHOLE_NUMBER.fullmatch(text) or int(text) < minimum:
        raise refused(name, value, f"a whole number, {minimum} or more")
    return int(text)


def seconds(name: str, value: object) -> float:
    """A time such as 2 or "0.5": finite and above 0 (0 would make a loop spin)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise refused(name, value, "a number of seconds above 0")
    return number
