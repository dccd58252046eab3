"""A real gateway served by uvicorn in a thread, and a real Chromium driven by Playwright.

Debian's ``chromium`` package provides the browser (Playwright cannot download its own
here). Every page a test opens is kept, so that one test can check that no raw record
appears on any of them; screenshots go to tests/browser/screenshots/ (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_sync
import pytest

from gateway.bootstrap import Services
from tests.conftest import PASSWORD, make_services
from tests.live import serve_gateway

CHROMIUM = os.environ.get("DPSANDBOX_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
# Waits for a page or an element: generous, since CI shares 2 cores with JupyterHub, Docker
# and Spark (a condition met at once still passes at once). Playwright's expect() waits
# 5 s unless told.
PAGE_TIMEOUT_MS = 30_000
playwright_sync.expect.set_options(timeout=PAGE_TIMEOUT_MS)


@dataclass
class Console:
    """The running gateway, and the HTML of every console page the tests looked at."""

    base: str
    services: Services
    seen: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory,
            demo_files: dict[str, Path]) -> Iterator[Console]:
    services = make_services(tmp_path_factory.mktemp("console-home"), demo_files)
    with serve_gateway(services, name="console-gateway") as url:
        yield Console(url, services)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    with playwright_sync.sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Session:
    """One person's browser tab, signed in to the console."""

    def __init__(self, console: Console, browser: Any, username: str) -> None:
        self.console, self.username = console, username
        self.context = browser.new_context(viewport={"width": 1366, "height": 900},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.blocked: list[str] = []  # anything the page's Content-Security-Policy refused
        self.page.on("console", lambda msg: self.blocked.append(msg.text)
                     if "Content Security Policy" in msg.text else None)
        self.page.goto(console.url("/console"))
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()
        self.keep()

    def keep(self) -> None:
        self.console.seen[f"{self.username} {self.page.url}"] = self.page.content()

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.console.url(path))
        self.keep()
        return response

    def click(self, locator: Any) -> None:
        locator.click()
        self.page.wait_for_load_state()
        self.keep()

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def sign_in(console: Console, browser: Any) -> Iterator[Any]:
    sessions: list[Session] = []

    def open_as(username: str) -> Session:
        session = Session(console, browser, username)
        sessions.append(session)
        return session

    yield open_as
    for session in sessions:
        session.close()
    blocked = [text for session in sessions for text in session.blocked]
    assert not blocked, f"the console's CSP refused parts of its own pages: {blocked[:3]}"


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)
