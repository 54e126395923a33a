"""The admin guard: a bearer token from the `ADMIN_TOKEN` setting, off when unset."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import abort, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized


def admin_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        check_admin()
        return view(*args, **kwargs)

    return guarded


def check_admin() -> None:
    expected = current_app.config.get("ADMIN_TOKEN") or ""
    if not expected:
        abort(403, "admin endpoints are off: set ADMIN_TOKEN to enable them")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        message = "admin token required: send Authorization: Bearer <ADMIN_TOKEN>"
        raise Unauthorized(message, www_authenticate=WWWAuthenticate("bearer"))
    # compare_digest: the time taken must not reveal how much of the token matched.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        abort(403, "wrong admin token")
