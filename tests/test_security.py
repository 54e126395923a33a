"""Security headers, CORS, rate limits, admin guards, secrets and the request log."""

from __future__ import annotations

import io
import json
import re

import pytest

from digits import security, settings
from tests.helpers import ROOT

TOKEN = "s3cret-admin-token"


# --- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/api/dataset/counts", "/no-such-page", "/api/openapi.json"]
)
def test_security_headers_on_every_response(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "img-src 'self' data:" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]


def test_security_headers_on_errors_and_static(client):
    too_big = client.post("/hook", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert too_big.status_code == 413
    assert too_big.headers["X-Frame-Options"] == "DENY"
    static = client.get("/static/css/app.css")
    if static.status_code == 200:
        assert static.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_pages_have_no_inline_scripts_or_styles():
    """The CSP forbids inline code, so the templates must not rely on any."""
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"inline <script> in {template.name}: {tag}"
        assert "<style" not in text, f"inline <style> in {template.name}"
        assert not re.search(r"\son[a-z]+=", text), f"inline event handler in {template.name}"


# --- CORS ------------------------------------------------------------------------------


def test_cors_is_same_origin_by_default(client):
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/hook",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_origins_allows_only_the_listed_sites(make_app):
    app = make_app(CORS_ORIGINS="https://a.example, https://b.example/")
    client = app.test_client()
    allowed = client.get("/api/dataset/counts", headers={"Origin": "https://b.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    other = client.get("/api/dataset/counts", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/hook",
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


# --- rate limits -----------------------------------------------------------------------


def test_parse_rate():
    assert security.parse_rate("R", "30/minute") == security.Rate(30.0, 0.5)
    assert security.parse_rate("R", " 5 / second ") == security.Rate(5.0, 5.0)
    assert security.parse_rate("R", "off") is None and security.parse_rate("R", "") is None
    for bad in ("30", "0/minute", "-1/minute", "30/day", "lots"):
        with pytest.raises(settings.BadSetting, match=f"^R={bad!r}: use N/second"):
            security.parse_rate("R", bad)


def test_parse_origins():
    given = " https://a.example, http://localhost:8000/ ,http://[::1]:5000,"
    expected = ["https://a.example", "http://localhost:8000", "http://[::1]:5000"]
    assert security.parse_origins("C", given) == expected
    assert security.parse_origins("C", "") == [] and security.parse_origins("C", None) == []
    for bad in ("a.example", "ftp://a.example", "https://a.example/api", "https://a.*", "https://"):
        with pytest.raises(settings.BadSetting, match="^C='.*': use origins such as"):
            security.parse_origins("C", bad)


def test_token_bucket_refills_over_time():
    now = [0.0]
    limiter = security.TokenBucketLimiter(security.Rate(2.0, 1.0), clock=lambda: now[0])
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.take("a") == 0.0


def test_token_bucket_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(security, "MAX_TRACKED_CLIENTS", 100)
    now = [0.0]
    limiter = security.TokenBucketLimiter(security.Rate(1.0, 1.0), clock=lambda: now[0])
    for i in range(1000):
        now[0] += 0.01
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 200


def save(client, drawing_url, ip="198.51.100.7", **headers):
    return client.post(
        "/hook",
        data={"imageBase64": drawing_url, "digit": "3"},
        environ_base={"REMOTE_ADDR": ip},
        headers=headers,
    )


def test_saves_are_rate_limited_per_client(make_app, storage_dir, drawing_url):
    client = make_app(RATE_LIMIT_SAVES="3/minute").test_client()
    assert [save(client, drawing_url).status_code for _ in range(3)] == [201, 201, 201]
    refused = save(client, drawing_url)
    assert refused.status_code == 429
    assert "too many requests" in refused.json["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.headers["X-Frame-Options"] == "DENY"
    assert save(client, drawing_url, ip="198.51.100.8").status_code == 201
    # Nothing was saved for the refused request: 4 drawings, 2 files each.
    assert len([p for p in storage_dir.rglob("*") if p.is_file()]) == 8


def test_feedback_is_rate_limited(make_app):
    client = make_app(RATE_LIMIT_FEEDBACK="2/minute").test_client()
    # A body the app refuses anyway (415), so this test does not depend on the view.
    codes = [
        client.post("/api/feedback", data="x", content_type="text/plain").status_code
        for _ in range(3)
    ]
    assert codes == [415, 415, 429]


def test_other_routes_are_not_limited(make_app):
    client = make_app(RATE_LIMIT_SAVES="1/minute").test_client()
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}


def test_rate_limit_off(make_app, drawing_url):
    client = make_app(RATE_LIMIT_SAVES="off").test_client()
    assert {save(client, drawing_url).status_code for _ in range(40)} == {201}


def test_forwarded_for_is_ignored_without_a_trusted_proxy(make_app, drawing_url):
    client = make_app(RATE_LIMIT_SAVES="1/minute").test_client()
    assert save(client, drawing_url, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 201
    # A client cannot dodge the limit by inventing addresses.
    assert save(client, drawing_url, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 429


def test_behind_heroku_router_the_last_hop_is_the_client(make_app, drawing_url):
    client = make_app(RATE_LIMIT_SAVES="1/minute", TRUSTED_PROXY_HOPS="1").test_client()
    # The router appends the real address; whatever the client put before it is ignored.
    first = save(client, drawing_url, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.1"})
    assert first.status_code == 201
    spoof = save(client, drawing_url, **{"X-Forwarded-For": "7.7.7.7, 203.0.113.1"})
    assert spoof.status_code == 429
    other = save(client, drawing_url, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.2"})
    assert other.status_code == 201


def test_heroku_dyno_trusts_one_hop(make_app, monkeypatch):
    monkeypatch.setenv("DYNO", "web.1")
    app = make_app()
    assert app.config["TRUSTED_PROXY_HOPS"] == 1
    monkeypatch.delenv("DYNO")
    assert make_app().config["TRUSTED_PROXY_HOPS"] == 0


def test_limits_come_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_SAVES", "1000/second")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example")
    app = make_app()
    assert app.config["RATE_LIMIT_SAVES"] == security.Rate(capacity=1000.0, per_second=1000.0)
    assert app.config["CORS_ORIGINS"] == ["https://a.example"]


# --- admin endpoints -------------------------------------------------------------------

ADMIN_ENDPOINTS = [
    ("GET", "/api/dataset/export"),
    ("POST", "/api/dataset/exports"),
    ("GET", "/api/dataset/exports/x20261207T000000-0123abcd"),
    ("GET", "/api/dataset/exports/x20261207T000000-0123abcd/download"),
    ("DELETE", "/api/dataset/3_20261124T000000000000_abcdefabcdef"),
    ("POST", "/api/models/rollback"),
    ("POST", "/api/models/pin"),
]


def has_route(app, method: str, path: str) -> bool:
    adapter = app.url_map.bind("localhost")
    try:
        adapter.match(path, method=method)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("method,path", ADMIN_ENDPOINTS)
def test_admin_endpoints_are_guarded(make_app, method, path):
    off = make_app()
    if not has_route(off, method, path):
        pytest.skip(f"{method} {path} does not exist yet")
    assert off.test_client().open(path, method=method).status_code == 403
    client = make_app(ADMIN_TOKEN=TOKEN).test_client()
    missing = client.open(path, method=method)
    assert missing.status_code == 401 and "error" in missing.json
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong_scheme = client.open(path, method=method, headers={"Authorization": f"Basic {TOKEN}"})
    assert wrong_scheme.status_code == 401
    wrong = client.open(path, method=method, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "error" in wrong.json
    prefix = client.open(path, method=method, headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
    assert prefix.status_code == 403
    right = client.open(path, method=method, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code not in (401, 403)


@pytest.mark.parametrize("method,path", ADMIN_ENDPOINTS)
def test_admin_endpoints_answer_an_allowed_sites_preflight(make_app, method, path):
    # A browser sends no token with its preflight; only the request itself must carry one.
    app = make_app(ADMIN_TOKEN=TOKEN, CORS_ORIGINS="https://a.example")
    preflight = app.test_client().options(
        path,
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert method in preflight.headers["Access-Control-Allow-Methods"]


# --- secrets ---------------------------------------------------------------------------


def test_secrets_have_no_defaults(make_app, monkeypatch):
    for name in ("ADMIN_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = make_app()
    assert app.config["ADMIN_TOKEN"] == ""
    assert not any(k.startswith("AWS_") and "KEY" in k for k in app.config)


def test_no_secrets_in_source_files():
    """No AWS key ids, and no secret-looking assignments with literal values, in the code."""
    key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    assignment = re.compile(
        r"""(secret_access_key|admin_token|password)\s*[=:]\s*["'][^"'\s]{6,}["']""", re.I
    )
    for path in [*ROOT.glob("*.py"), *ROOT.glob("digits/**/*.py"), ROOT / "app.json"]:
        if not path.exists():
            continue
        text = path.read_text()
        assert not key_id.search(text), path
        assert not assignment.search(text), path


# --- request log -----------------------------------------------------------------------


class Lines(io.StringIO):
    """The request log's stream: every line written, parsed."""

    @property
    def lines(self) -> list[dict]:
        return [json.loads(text) for text in self.getvalue().splitlines()]


@pytest.fixture
def log_lines(app):
    stream = Lines()
    app.extensions["request_log"].stream = stream
    return stream


def test_one_json_line_per_request(client, log_lines, drawing_url):
    client.get("/healthz")
    client.post("/hook", data={"imageBase64": drawing_url, "digit": "4"})
    client.post("/hook", json={"digit": "x"})
    client.get("/missing")
    assert [(x["method"], x["path"], x["status"]) for x in log_lines.lines] == [
        ("GET", "/healthz", 200),
        ("POST", "/hook", 201),
        ("POST", "/hook", 400),
        ("GET", "/missing", 404),
    ]
    for line in log_lines.lines:
        assert line["event"] == "request"
        assert isinstance(line["ms"], float) and line["ms"] >= 0
        assert line["client"] == "127.0.0.1"
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])


def test_request_id_from_the_router_is_kept_and_echoed(client, log_lines):
    rid = "9f0c1f2e-7a4b-4c1d-8e2f-0123456789ab"
    response = client.get("/healthz", headers={"X-Request-ID": rid})
    assert response.headers["X-Request-ID"] == rid
    assert log_lines.lines[-1]["request_id"] == rid
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" "status": 200'})
    assert forged.headers["X-Request-ID"] != 'x" "status": 200'


def test_rate_limited_requests_are_logged(make_app, drawing_url):
    app = make_app(RATE_LIMIT_SAVES="1/minute")
    app.extensions["request_log"].stream = stream = Lines()
    save(app.test_client(), drawing_url)
    save(app.test_client(), drawing_url)
    assert [x["status"] for x in stream.lines] == [201, 429]
    assert stream.lines[-1]["client"] == "198.51.100.7"


def test_the_request_log_goes_to_stdout(client, capsys):
    client.get("/healthz")
    line = json.loads(capsys.readouterr().out)
    assert (line["path"], line["status"]) == ("/healthz", 200)


def test_request_log_can_be_turned_off(make_app, capsys):
    app = make_app(LOG_REQUESTS="off")
    assert app.test_client().get("/healthz").status_code == 200
    assert "request_log" not in app.extensions
    assert capsys.readouterr().out == ""


# --- Heroku Button (app.json) ----------------------------------------------------------


def test_app_json_asks_for_secrets_and_generates_the_admin_token():
    app_json = json.loads((ROOT / "app.json").read_text())
    env = app_json["env"]
    assert env["ADMIN_TOKEN"]["generator"] == "secret" and "value" not in env["ADMIN_TOKEN"]
    for name in ("STORAGE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["required"] is True and "value" not in env[name], name
    for name in ("AWS_DEFAULT_REGION", "CORS_ORIGINS", "RATE_LIMIT_SAVES"):
        assert env[name]["description"], name
    assert {"url": "heroku/python"} in app_json["buildpacks"]
    # Heroku does not mix Basic dynos with Standard ones in one app: the web dyno is Standard too.
    assert app_json["formation"]["web"] == {"quantity": 1, "size": "standard-1x"}
    # The trainer imports TensorFlow: about 630 MB idle, 920 MB at peak, so it needs 1 GB.
    assert app_json["formation"]["worker"] == {"quantity": 1, "size": "standard-2x"}


def test_app_json_formation_matches_the_procfile():
    processes = {
        line.split(":", 1)[0].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if ":" in line and not line.startswith("#")
    }
    formation = json.loads((ROOT / "app.json").read_text())["formation"]
    assert set(formation) <= processes, f"Procfile lacks {set(formation) - processes}"
