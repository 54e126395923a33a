"""A live Digits server in a background thread and Playwright driving Debian's Chromium.

The server is the real app (`main.create_app`) on a free 127.0.0.1 port with
local storage in a temporary folder, so tests can look at what was stored.
One server and one browser serve the whole session: starting Chromium costs
about a second, and the suite must stay fast.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from browser_helpers import ADMIN_TOKEN, DESKTOP, PHONE
from werkzeug.serving import make_server

from digits import db, exports
from digits.nets import NETS
from tests.helpers import ROOT, make_models_dir, new_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "screenshots"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install -y chromium")
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
            if not os.access(CHROMIUM, os.X_OK):
                item.add_marker(skip)


class LiveServer:
    """werkzeug's server on a thread; `url` is its base address."""

    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-storage")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The trained models when the repo has them, else the tiny test nets as "original"."""
    shipped = ROOT / "models"
    if all((shipped / f"{net}.tflite").is_file() for net in NETS):
        return shipped
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def live_app(storage_root, models_dir, tmp_path_factory):
    # Its own database: a session fixture starts before each test's DATABASE_URL is set, and
    # the default would be the repository's instance/ folder, which `make run` then shows.
    records = tmp_path_factory.mktemp("browser-records") / "digits.sqlite3"
    return new_app(
        storage_root,
        MODELS_DIR=str(models_dir),
        ADMIN_TOKEN=ADMIN_TOKEN,
        LOG_REQUESTS="off",
        DATABASE_URL=f"sqlite:///{records}",
    )


@pytest.fixture(scope="session")
def live_server(live_app):
    server = LiveServer(live_app)
    server.start()
    # The trainer worker's export thread, as `make run` has it: the Dataset page's export is a
    # job that it builds.
    engine, storage = db.engine_of(live_app), live_app.extensions["storage"]
    stop_exports = exports.start_thread(engine, storage, interval=0.2)
    yield server
    stop_exports.set()
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open_page(browser, options: dict):
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    # Uncaught script errors and Content-Security-Policy violations (an inline style or
    # script slipped in) fail the test that caused them.
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.on(
        "console",
        lambda msg: (
            page.js_errors.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )
    return context, page


@pytest.fixture
def page(browser):
    context, page = _open_page(browser, DESKTOP)
    yield page
    context.close()
    assert page.js_errors == [], f"JavaScript errors: {page.js_errors}"


@pytest.fixture
def phone_page(browser):
    context, page = _open_page(browser, PHONE)
    yield page
    context.close()
    assert page.js_errors == [], f"JavaScript errors: {page.js_errors}"


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
