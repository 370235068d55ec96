"""Browser tests: Debian's /usr/bin/chromium, headless, driven by Playwright (which is never
allowed to download a browser of its own), against the whole service: the SMTP door, the
worker, outbound delivery, the event bus and the web, each on an ephemeral port.

The door here is an MX-style one (no AUTH required) so that mail from a sender who did not
sign in can be held in the quarantine and released from the web; providers still sign in.
Screenshots of every page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mailflow.app import App
from mailflow.config import Config
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import ROOT, RunningService, make_config
from tests.support.sink import RelaySink
from tests.support.web import people

__all__ = ["people"]

CHROMIUM = os.environ.get("MAILFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = ROOT / "test-artifacts" / "screenshots"

@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium as root")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def site_config(tmp_path: Path, db_url: str, sink: RelaySink,
                **sections: dict[str, object]) -> Config:
    """The browser tests' service: mail out to the sink, the door open without AUTH; a test
    module's own `config` fixture passes what it needs besides."""
    from mailflow.app import initialise

    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000, "require_auth": False},
        **sections,
    )
    initialise(cfg)
    return cfg


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    return site_config(tmp_path, db_url, sink)


@pytest.fixture
def site(app: App, process_pool: AnalysisPool) -> Iterator[RunningService]:
    running = RunningService(app, process_pool,
                             ("bus", "smtp", "worker", "reports", "outbox", "web")).start()
    yield running
    running.stop()


class Browser:
    """A fresh browser profile (its own cookies) that collects console errors and CSP
    violations, and takes named screenshots."""

    def __init__(self, chromium: object, base: str, shot_prefix: str) -> None:
        self.context = chromium.new_context(base_url=base, viewport={"width": 1360, "height": 900})  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []  # script errors, CSP violations
        self.failed: list[tuple[int, str]] = []  # responses >= 400: (status, path)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)
        self.prefix = shot_prefix

    def _console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)  # (failed loads are in self.failed, with the URL)

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append((response.status, urlsplit(response.url).path))

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.prefix}{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, email: str, password: str) -> None:
        page = self.page
        page.goto("/")
        page.wait_for_url(re.compile(r"/login"))
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/$"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browser(chromium: object, site: RunningService, request: pytest.FixtureRequest
            ) -> Iterator[Callable[[], Browser]]:
    made: list[Browser] = []
    db = "postgres-" if "postgres" in request.node.name else ""

    def open_browser() -> Browser:
        b = Browser(chromium, site.web_url, db)
        made.append(b)
        return b

    yield open_browser
    for b in made:
        b.close()

