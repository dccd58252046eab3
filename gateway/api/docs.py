"""The API's documentation pages, served from the package: they work on an offline network.

Swagger UI (``/docs``) loads its script and style from ``/docs/static``: files shipped
by the pinned ``fastapi-offline`` package (Swagger UI 5, Apache 2.0; that package's
licence names it), never from a CDN. No ReDoc page: its bundle fetches its logo from the
internet. The gateway's root sends a browser to the console.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs/static"


def install(app: FastAPI, *, openapi_url: str) -> None:
    """Mount the assets and the page (the app is created with ``docs_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url="/console/static/favicon.svg")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)
