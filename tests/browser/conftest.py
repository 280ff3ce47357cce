"""Browser tests: the real app on a free port (werkzeug in a thread) driven by Debian's Chromium
through Playwright. One browser per session, one context per user; a screenshot of every open
page goes to test-artifacts/ when a test fails."""

from __future__ import annotations

import re
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from werkzeug.serving import make_server

from engine.identity import IdentityService
from engine.notify import ConsoleGateway, start_worker_thread
from engine.service import WorkflowEngine
from tests.web.conftest import deploy_web_fixtures, fast_password_hashing  # noqa: F401 (autouse)
from web import create_app

playwright_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 10_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make chromium)")
    with playwright_api.sync_playwright() as p:
        # launch() gives every run a fresh temporary profile (user-data dir) of its own
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class LiveServer:
    def __init__(self, engine: WorkflowEngine):
        self.engine = engine
        self.app = create_app({"SECRET_KEY": "browser-tests", "TESTING": False}, engine=engine)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        # as `hospital-workflow serve` does: the SMS worker runs beside the web server
        self.notifier = start_worker_thread(self.engine, ConsoleGateway())
        return self

    def __exit__(self, *exc) -> None:
        self.notifier.stop()
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(engine: WorkflowEngine) -> Iterator[LiveServer]:
    IdentityService(engine).create_demo_staff()
    deploy_web_fixtures(engine)
    with LiveServer(engine) as server:
        yield server


@pytest.fixture
def login_as(browser, live_server, request):
    """login_as("frontdesk") → a signed-in page in a context of its own."""
    contexts = []
    pages = []

    def login(username: str, password: str = "demo"):
        context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",
                                      base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append((username, page))
        page.goto("/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/(\?.*)?$"))
        return page

    yield login
    failed = any(getattr(request.node, f"report_{when}", None) is not None
                 and getattr(request.node, f"report_{when}").failed for when in ("setup", "call"))
    if failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for username, page in pages:
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{username}.png"), full_page=True)
            except playwright_api.Error as exc:  # the page may be gone already
                warnings.warn(f"no screenshot of {username}'s page: {exc}", stacklevel=1)
    for context in contexts:
        context.close()
