"""Browser-facing protections: CORS, security headers and a per-client rate limit.

`init_app(app)` attaches all three. Settings (app.config; digits/config.py parses them):

- `CORS_ORIGINS`: comma-separated origins allowed to call the API from other sites.
  Empty (the default) means same-origin only: no CORS headers are ever sent.
- `RATE_LIMIT_SAVES` (POST /hook), `RATE_LIMIT_FEEDBACK` (POST /api/feedback) and
  `RATE_LIMIT_READS` (GET /api/stats, /api/dataset and /api/dataset/counts, one bucket for the
  three): "N/second|minute|hour", or "off". The limit is per client IP and per worker process.
- `TRUSTED_PROXY_HOPS`: how many proxies in front of us set X-Forwarded-For
  (1 on Heroku, whose router appends the real client; 0 elsewhere, so nobody can spoof it).

A value that cannot be used raises settings.BadSetting when the app is made.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_path_info

from digits import settings
from digits.bodies import WSGIApp
from digits.origin import init_app as refuse_cross_site_changes

# Self only. `img-src data:` because the page previews drawings as data: URLs;
# no 'unsafe-inline' anywhere, so an injected <script> or style attribute never runs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # The app needs no device features; say so, so an injected frame cannot ask for them.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Only sent over HTTPS: a browser that saw it over plain HTTP would ignore it anyway.
HSTS = "max-age=31536000; includeSubDomains"

# Which (method, path) pairs are limited, and by which setting.
LIMITED_ROUTES = {
    ("POST", "/hook"): "RATE_LIMIT_SAVES",
    ("POST", "/api/feedback"): "RATE_LIMIT_FEEDBACK",
    # One bucket for the three: the pages ask for them, people follow the pages.
    ("GET", "/api/stats"): "RATE_LIMIT_READS",
    ("GET", "/api/dataset"): "RATE_LIMIT_READS",
    ("GET", "/api/dataset/counts"): "RATE_LIMIT_READS",
}
PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$", re.ASCII)
# A browser's Origin header: scheme, host (a name, or an address in brackets) and maybe a port.
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?", re.ASCII)
# Past this many tracked clients, forget those whose bucket has refilled (they lose nothing).
MAX_TRACKED_CLIENTS = 10_000


@dataclass(frozen=True)
class Rate:
    """`capacity` requests at once, refilled at `per_second`."""

    capacity: float
    per_second: float


def parse_rate(name: str, text: str | None) -> Rate | None:
    """ "30/minute" -> Rate(30, 0.5); "off", "" or None -> None (no limit); else BadSetting."""
    if isinstance(text, Rate):
        return text
    if text is None or str(text).strip().lower() in ("", "off", "none"):
        return None
    match = _RATE.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise settings.refused(name, text, "N/second, N/minute, N/hour or off")
    count = int(match.group(1))
    return Rate(capacity=float(count), per_second=count / PERIODS[match.group(2)])


class TokenBucketLimiter:
    """One token bucket per key, in this process's memory, safe across threads."""

    def __init__(self, rate: Rate, clock=time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last update)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token: return 0.0 if allowed, else the seconds until one is free."""
        now = self.clock()
        with self._lock:
            tokens = self._refilled(key, now)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._forget(now)
        return 0.0 if allowed else (1.0 - tokens) / self.rate.per_second

    def _refilled(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.rate.capacity, now))
        return min(self.rate.capacity, tokens + (now - last) * self.rate.per_second)

    def _forget(self, now: float) -> None:
        """Drop refilled buckets (their clients lose nothing); if that is not enough,
        drop the oldest half too, so a flood of addresses cannot exhaust memory."""
        for key in [k for k in self._buckets if self._refilled(k, now) >= self.rate.capacity]:
            del self._buckets[key]
        if len(self._buckets) > MAX_TRACKED_CLIENTS // 2:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for key in oldest[: len(oldest) - MAX_TRACKED_CLIENTS // 2]:
                del self._buckets[key]


def init_app(app: Flask) -> None:
    init_cors(app)
    # Before the rate limits: a refused cross-site request spends nobody's tokens.
    refuse_cross_site_changes(app, app.config["CORS_ORIGINS"])
    init_rate_limits(app)
    app.after_request(add_security_headers)


def proxy_fix(app: Flask, inner: WSGIApp) -> WSGIApp:
    """The WSGI layer that trusts TRUSTED_PROXY_HOPS proxies, or `inner` itself when none."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops == 0:
        return inner
    # Heroku's router appends the client's address to X-Forwarded-For; trusting
    # exactly one hop means a client's own X-Forwarded-For value is ignored.
    return ProxyFix(inner, x_for=hops, x_proto=hops, x_host=0)


def parse_origins(name: str, text: str | list[str] | None) -> list[str]:
    """ "https://a.example, http://b.example:8000/" -> both, without the slash; "" -> [].
    A site without its scheme would never match a browser's Origin, so it is refused."""
    if isinstance(text, list):
        text = ",".join(text)
    origins = [o.strip().rstrip("/") for o in str(text or "").split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise settings.refused(name, text, "origins such as https://a.example, comma-separated")
    return origins


def init_cors(app: Flask) -> None:
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return  # Same-origin only: browsers block cross-site reads without CORS headers.
    from flask_cors import CORS

    # No credentials: the API uses no cookies, and the admin token is sent explicitly.
    options = {
        "resources": {r"/api/*": {}, r"/hook": {}, r"/healthz": {}},
        "origins": origins,
        "supports_credentials": False,
        "allow_headers": ["Content-Type", "Authorization"],
        # Not one a browser shows another site's script unasked: the 429s and 503s say when
        # to ask again.
        "expose_headers": ["Retry-After"],
        "max_age": 600,
    }
    CORS(app, **options)
    app.extensions["cors_headers"] = CorsHeaders(app, options)


class CorsHeaders:
    """The CORS headers flask-cors adds to an answer, for answers written before Flask (the
    public reads' 503, digits/public.py): flask-cors's own functions, on the options and the
    routes CORS(app) was given, so both answer an Origin alike."""

    def __init__(self, app: Flask, options: dict) -> None:
        from flask_cors import core

        self.core = core
        routes = core.parse_resources(options["resources"])
        self.routes = [(route, core.get_cors_options(app, options, own)) for route, own in routes]

    def __call__(self, environ: dict) -> list[tuple[str, str]]:
        path = unquote(get_path_info(environ))  # as flask-cors matches request.path
        for route, options in self.routes:
            if self.core.try_match_pattern(path, route, caseSensitive=True):
                method = environ.get("REQUEST_METHOD", "GET")
                found = self.core.get_cors_headers(options, EnvironHeaders(environ), method)
                return [(name, str(value)) for name, value in found.items()]
        return []


def cors_headers(app: Flask, environ: dict) -> list[tuple[str, str]]:
    """What flask-cors would add to an answer to this request: nothing without CORS_ORIGINS,
    without an Origin, for a path it does not cover or for an Origin it does not allow."""
    headers_for = app.extensions.get("cors_headers")
    if headers_for is None or "HTTP_ORIGIN" not in environ:
        return []
    return headers_for(environ)


def init_rate_limits(app: Flask) -> None:
    """A limiter per setting, shared by the routes it limits: route -> its limiter."""
    per_setting = {
        setting: TokenBucketLimiter(app.config[setting])
        for setting in set(LIMITED_ROUTES.values())
        if app.config[setting] is not None
    }
    app.extensions["rate_limiters"] = {
        route: per_setting[setting]
        for route, setting in LIMITED_ROUTES.items()
        if setting in per_setting
    }
    app.before_request(check_rate_limit)


def check_rate_limit() -> Response | None:
    limiter = current_app.extensions["rate_limiters"].get((request.method, request.path))
    if limiter is None:
        return None
    wait = limiter.take(request.remote_addr or "unknown")
    if wait <= 0:
        return None
    seconds = max(1, math.ceil(wait))
    response = jsonify(error=f"too many requests from your address; try again in {seconds} s")
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response


def add_security_headers(response: Response) -> Response:
    # One pass over the headers, not one per name: this runs on every response.
    present = {name.lower() for name in response.headers.keys()}
    for name, value in response_headers(request.is_secure):
        if name.lower() not in present:
            response.headers.add(name, value)
    return response


def response_headers(secure: bool) -> list[tuple[str, str]]:
    """The security headers every response carries; HSTS only over HTTPS."""
    pairs = list(SECURITY_HEADERS.items())
    return [*pairs, ("Strict-Transport-Security", HSTS)] if secure else pairs
