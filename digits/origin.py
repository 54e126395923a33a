"""Refuse state-changing requests that a browser sends on behalf of another site.

A page elsewhere can make a visitor's browser POST a plain form to /hook (no preflight, so CORS
never asks us): without this check the drawing would be stored. Browsers say where a request
comes from: `Origin` on every POST, and `Sec-Fetch-Site: cross-site` when it is another site's.
A request whose Origin is neither this site nor one of CORS_ORIGINS, or that says cross-site
without an Origin, is answered 403 with a JSON error, before anything is read or stored. Clients
that send neither header (curl, scripts, the tests) are not browsers acting for another site,
and stay allowed. Reads (GET, HEAD, OPTIONS) change nothing and are never refused here.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def init_app(app: Flask, cors_origins: list[str]) -> None:
    """Refuse cross-site changes, except from the sites CORS_ORIGINS lets call the API."""
    app.extensions["allowed_origins"] = [normal(origin) for origin in cors_origins]
    app.before_request(refuse_cross_site)


def refuse_cross_site() -> Response | None:
    foreign = cross_site(request.environ, current_app.extensions["allowed_origins"])
    if foreign is None:
        return None
    response = jsonify(
        error=f"refused: this request comes from another site ({foreign}), which may not "
        "change anything here; nothing was stored"
    )
    response.status_code = 403
    return response


def cross_site(environ: dict, allowed: list[str]) -> str | None:
    """The other site a state-changing request comes from, or None when it may go ahead."""
    if environ.get("REQUEST_METHOD") in SAFE_METHODS:
        return None
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        if normal(origin) in (own_origin(environ), *allowed) or "*" in allowed:
            return None
        return origin
    if environ.get("HTTP_SEC_FETCH_SITE", "").lower() == "cross-site":
        return "another site, says Sec-Fetch-Site"
    return None


def own_origin(environ: dict) -> str:
    """This site as a browser names it: scheme://host[:port], the default port left out.
    Behind Heroku's router the scheme is the client's (X-Forwarded-Proto, security.py)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    return normal(f"{scheme}://{host}")


def normal(origin: str) -> str:
    """Lower case, no trailing slash, no default port: the form browsers send."""
    origin = origin.strip().rstrip("/").lower()
    scheme = origin.partition("://")[0]
    port = DEFAULT_PORTS.get(scheme)
    return origin.removesuffix(port) if port else origin
