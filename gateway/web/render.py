"""Turning a page's data into HTML: the Jinja environment, the error page, the route class.

Every console route is a :class:`ConsoleRoute`: whatever a route raises becomes a page,
not the API's JSON. A domain error (forbidden, not found, conflict, ...) renders a
friendly page with its code, message and the contract's status (the refusal was audited
where it was raised: in a service, or by :func:`gateway.web.session.console_refusals`); an
unavailable store says so in words with ``Retry-After``; an expired or missing session sends
the browser to the sign-in page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from gateway.api.errors import INTERNAL_ERROR
from gateway.domain.errors import STATUS_BY_CODE, DomainError, Unauthenticated, Unavailable
from gateway.domain.input_errors import describe
from gateway.i18n import N_, _, _l, current_locale, install_jinja, localize
from gateway.services.common import Principal
from gateway.web.words import ACTIONS, action_name, role_name, status_name

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
LOGIN_PATH = "/console/login"
SESSION_COOKIE = "dps_console"

# No inline scripts or styles, nothing from elsewhere, no framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

ERROR_TITLES = {
    "unauthenticated": N_("Please sign in"),
    "forbidden": N_("Not allowed"),
    "grant_required": N_("No grant"),
    "grant_expired": N_("Grant expired"),
    "not_found": N_("Not found"),
    "invalid_request": N_("Something in the form is not right"),
    "unsupported_query": N_("Unsupported query"),
    "conflict": N_("This was changed meanwhile"),
    "budget_exhausted": N_("Budget exhausted"),
    "unavailable": N_("Temporarily unavailable"),
    "release_pending": N_("Charged; the release is pending"),
    "internal": N_("Internal error"),
}


def number(value: Any, digits: int = 4) -> str:
    """A budget or statistic for people: at most ``digits`` decimals, no trailing zeros."""
    if value is None:
        return "–"
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    text = f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def when(value: str | None) -> Markup | str:
    """An ISO time from the store as ``2026-11-26 14:03 UTC``, in a <time> element."""
    if not value:
        return "–"
    try:
        text = datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value
    return Markup('<time datetime="{}">{}</time>').format(value, text)


def short(value: str | None) -> str:
    return value[:8] if value else "–"


def percent(part: float | None, whole: float | None) -> float:
    if not whole or part is None:
        return 0.0
    return max(0.0, min(100.0, 100.0 * part / whole))


def loc(record: Any, key: str) -> str:
    """A catalog text in the reader's language: a policy may give ``title_zh`` beside
    ``title`` (and ``description_zh``, also per column); English is the fallback."""
    get = record.get if isinstance(record, dict) else lambda k: getattr(record, k, None)
    if current_locale().startswith("zh") and get(f"{key}_zh"):
        return str(get(f"{key}_zh"))
    return str(get(key) or "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    install_jinja(env)
    env.filters.update(number=number, when=when, short=short, stored=localize)
    env.globals.update(percent=percent, quote=quote, role_name=role_name, status_name=status_name,
                       action_name=action_name, known_actions=ACTIONS, loc=loc)
    return env


ENV = _environment()


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a console page with what every page shows (who is signed in, the CSRF token)."""
    session = getattr(request.state, "console", None)
    me: Principal | None = session.principal if session else None
    services = request.app.state.services
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = ENV.get_template(template).render(
        request=request, path=request.url.path, me=me, csrf=session.csrf if session else "",
        lang_next=here if request.method == "GET" else "/console",
        hub_url=services.settings.hub_url, notice=context.pop("notice", None),
        form=context.pop("form", None), **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def error_page(request: Request, code: str, message: str, status: int) -> HTMLResponse:
    return page(request, "error.html", status=status, code=code, message=message,
                title=_(ERROR_TITLES.get(code, N_("Error"))))


def to_login(request: Request, *, ended: bool) -> Response:
    """Send the browser to sign in, and back here afterwards (a code, never free text)."""
    target = request.url.path if request.method == "GET" else "/console"
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    reason = "ended" if ended else "required"
    location = f"{LOGIN_PATH}?next={quote(target, safe='')}&reason={reason}"
    response = RedirectResponse(location, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def validation_message(exc: RequestValidationError) -> str:
    return localize(describe(exc.errors(), whole=_l("the form")))


class ConsoleRoute(APIRoute):
    """An API route whose failures are pages (and carry the console's security headers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except Unauthenticated:
                response = to_login(request, ended=SESSION_COOKIE in request.cookies)
            except DomainError as exc:  # audited where it was raised; here only shown
                response = error_page(request, exc.code, exc.localized(),
                                      STATUS_BY_CODE.get(exc.code, 500))
                if isinstance(exc, Unavailable):
                    response.headers["Retry-After"] = str(exc.retry_after_seconds)
            except RequestValidationError as exc:
                response = error_page(request, "invalid_request", validation_message(exc), 422)
            except Exception:  # a page that says "bug", never a traceback
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                response = error_page(request, "internal", _(INTERNAL_ERROR), 500)
            response.headers.update(SECURITY_HEADERS)
            return response

        return handler
