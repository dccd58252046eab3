"""The API docs work on an offline network: every asset comes from the gateway itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import SCREENSHOTS, Console

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
from playwright.sync_api import expect  # noqa: E402


def offline_page(browser: Any) -> tuple[Any, Any, list[str], list[str]]:
    """A tab whose every request off this machine is aborted (as on an offline network)."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, blocked, errors


def test_api_docs_render_with_the_network_blocked(console: Console, browser: Any) -> None:
    context, page, blocked, errors = offline_page(browser)
    try:
        page.goto(console.url("/docs"))
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("dp-sandbox gateway",
                                                                         timeout=20_000)
        # The operations are listed: the spec came from /v1/openapi.json and rendered.
        expect(page.get_by_text("/v1/auth/token").first).to_be_visible()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "docs-offline.png"))
        assert blocked == [], f"the docs page reached off this machine: {blocked}"
        assert errors == [], errors
    finally:
        context.close()


def test_gateway_root_redirects_to_the_console(console: Console, browser: Any) -> None:
    context, page, _blocked, _errors = offline_page(browser)
    try:
        page.goto(console.url("/"))
        assert urlsplit(page.url).path == "/console/login"
    finally:
        context.close()
