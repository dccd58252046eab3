"""Chinese and English in the gateway: the gettext API, the reader's language, Jinja.

Everything the gateway shows a person goes through here (or through
``gateway.domain.text``, its standard-library core, which the domain uses directly):

    from gateway.i18n import _, _l, ngettext

    _("The grant was revoked.")                        # now, in the current language
    _l("no dataset %(name)s", name=name)               # later: raised, or built at import
    ngettext("%(num)s entry", "%(num)s entries", n) % {"num": n}

The current language is chosen per HTTP request by :class:`LocaleMiddleware` (the
console's remembered switch, the ``dps_lang`` cookie, first; then ``Accept-Language``;
English otherwise) and per command by :func:`locale_from_env` (``DPSANDBOX_LANG``).
Catalogs: ``gateway/locale/<locale>/LC_MESSAGES/messages.po`` (source of truth, edited by
hand) compiled to ``messages.mo`` (committed); ``make i18n`` re-extracts and updates them,
and tests/unit/test_i18n.py fails when a marked string has no zh-CN translation or a
catalog is stale. How to add a string: docs/i18n.md.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

from jinja2 import Environment

from gateway.domain.text import (
    LOCALES,
    N_,
    SOURCE_LOCALE,
    Text,
    current_locale,
    gettext,
    lazy_gettext,
    lazy_ngettext,
    localize,
    ngettext,
    normalize,
    reset_locale,
    set_locale,
    use_locale,
)

__all__ = [
    "LANGUAGE_NAMES",
    "LANG_COOKIE",
    "LOCALES",
    "N_",
    "SOURCE_LOCALE",
    "LocaleMiddleware",
    "Text",
    "_",
    "_l",
    "current_locale",
    "gettext",
    "html_lang",
    "install_jinja",
    "lazy_gettext",
    "lazy_ngettext",
    "locale_from_env",
    "localize",
    "negotiate",
    "ngettext",
    "normalize",
    "use_locale",
]

_ = gettext
_l = lazy_gettext
LANG_COOKIE = "dps_lang"
# Each language named in itself, for the switch (not translated on purpose).
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}


def parse_accept_language(header: str | None) -> list[str]:
    """The header's language tags, most wanted first (``q=0`` means "not this one")."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > 0:
            ranked.append((-quality, index, tag.strip()))
    return [tag for _q, _i, tag in sorted(ranked)]


def negotiate(accept_language: str | None, chosen: str | None = None) -> str:
    """The language to answer in: a remembered choice, else the browser's first language we
    carry, else English."""
    if normalize(chosen):
        return normalize(chosen) or SOURCE_LOCALE
    for tag in parse_accept_language(accept_language):
        found = normalize(tag)
        if found:
            return found
    return SOURCE_LOCALE


def locale_from_env(environ: MutableMapping[str, str] | None = None) -> str:
    """The CLI's and the notebooks' language: DPSANDBOX_LANG, else LANG/LC_ALL, else English."""
    env = os.environ if environ is None else environ
    for name in ("DPSANDBOX_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        found = normalize(env.get(name, "").split(".")[0])
        if found:
            return found
    return SOURCE_LOCALE


def html_lang(locale: str | None = None) -> str:
    """The BCP 47 tag for ``<html lang>`` and ``Content-Language``."""
    return (locale or current_locale()).replace("_", "-")


def install_jinja(env: Environment) -> None:
    """Jinja's i18n extension over our catalogs: ``{% trans %}`` blocks (trimmed) and
    ``_()``/``ngettext()`` with ``%(name)s`` placeholders (new style: escaped, always
    formatted)."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(html_lang=html_lang, current_locale=current_locale,
                       language_names=LANGUAGE_NAMES)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(name)
    except CookieError:  # a malformed Cookie header must not break the request
        return None
    return morsel.value if morsel else None


class LocaleMiddleware:
    """Sets the language of each HTTP request for everything that runs to answer it (the
    context variable is copied into the threads that run sync routes) and says which one
    was used (``Content-Language``; ``Vary`` for caches)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locale = negotiate(_header(scope, b"accept-language"), _cookie(scope, LANG_COOKIE))
        scope.setdefault("state", {})["locale"] = locale

        async def send_with_language(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"content-language", html_lang(locale).encode()))
                headers.append((b"vary", b"Accept-Language, Cookie"))
                message["headers"] = headers
            await send(message)

        token = set_locale(locale)
        try:
            await self.app(scope, receive, send_with_language)
        finally:
            reset_locale(token)
