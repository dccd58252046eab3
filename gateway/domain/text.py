"""Translatable text: written in English in the code, shown in the reader's language.

Standard library only (``gettext``, ``contextvars``), so that the domain can raise
messages that the API, the console and the CLI show in Chinese or English:

- ``_l("column %(column)s is not in the policy", column=name)`` (``lazy_gettext``) makes a
  :class:`Text`: the English message id and its parameters, translated only when it is
  turned into a string. Use it for messages built at import time or carried by an
  exception; ``DomainError.message`` keeps the English (for the audit log and logs) and
  ``DomainError.localized()`` gives the reader's language.
- ``gettext`` / ``ngettext`` translate at once, for code that runs while a request or a
  command is being answered.
- ``N_`` only marks a constant for extraction; translate it later with ``gettext``.

Placeholders are ``%(name)s`` (as in Jinja's i18n extension), and the message is always
formatted, so a literal percent sign is written ``%%``. The language of the current request
or command lives in a context variable, set by the gateway's middleware (``Accept-Language``
or the console's language cookie) and by the CLI (``DPSANDBOX_LANG``); lookups go through
``gettext`` over the compiled catalogs in ``gateway/locale`` (see docs/i18n.md).
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
SOURCE_LOCALE = "en"
LOCALES = ("en", "zh_CN")  # what a reader can choose; the first is the source language

_current: ContextVar[str] = ContextVar("dpsandbox_locale", default=SOURCE_LOCALE)


def normalize(tag: str | None) -> str | None:
    """A language tag (``zh-CN``, ``zh_Hans``, ``zh``, ``en-GB`` ...) as one of LOCALES, or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    if primary == "zh":
        return "zh_CN"  # Simplified Chinese is the only Chinese we carry
    if primary == "en":
        return "en"
    return None


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalog of ``locale`` (English, the source, needs none)."""
    if locale == SOURCE_LOCALE:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[locale], fallback=True)


def current_locale() -> str:
    return _current.get()


def set_locale(locale: str | None) -> Token[str]:
    """Switch the current context's language (reset it with ``reset_locale(token)``)."""
    return _current.set(normalize(locale) or SOURCE_LOCALE)


def reset_locale(token: Token[str]) -> None:
    _current.reset(token)


@contextmanager
def use_locale(locale: str | None) -> Iterator[None]:
    token = set_locale(locale)
    try:
        yield
    finally:
        reset_locale(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a constant for extraction without translating it (translate it when shown)."""
    return message


@dataclass(frozen=True)
class Text:
    """A message id with its parameters, translated when it is shown."""

    msgid: str
    params: tuple[tuple[str, object], ...] = ()
    plural: str | None = None
    n: int = 1

    def render(self, locale: str | None = None) -> str:
        """The message in ``locale`` (default: the current one); a parameter that is itself
        translatable (a Text, a Joined) is shown in the same language."""
        chosen = normalize(locale) or _current.get()
        catalog = translations(chosen)
        if self.plural is None:
            template = catalog.gettext(self.msgid)
        else:
            template = catalog.ngettext(self.msgid, self.plural, self.n)
        return template % {key: value.render(chosen) if isinstance(value, Text | Joined) else value
                           for key, value in self.params}

    @property
    def english(self) -> str:
        return self.render(SOURCE_LOCALE)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Joined:
    """Words joined by a translatable separator, e.g. ``Joined(roles, _l(" or "))``."""

    items: tuple[object, ...]
    separator: Text

    def render(self, locale: str | None = None) -> str:
        return self.separator.render(locale).join(
            item.render(locale) if isinstance(item, Text | Joined) else str(item)
            for item in self.items)

    @property
    def english(self) -> str:
        return self.render(SOURCE_LOCALE)

    def __str__(self) -> str:
        return self.render()


def lazy_gettext(msgid: str, **params: object) -> Text:
    return Text(msgid, tuple(params.items()))


def lazy_ngettext(singular: str, plural: str, n: int, **params: object) -> Text:
    """A message with a singular and a plural; ``%(num)s`` is ``n``."""
    return Text(singular, tuple({"num": n, **params}.items()), plural, n)


_l = lazy_gettext


def localize(message: str | Text | Joined) -> str:
    """A message in the current language: a Text is translated, and a plain string is looked
    up as it is (so a constant marked with ``N_`` is translated; anything else stays)."""
    if isinstance(message, Text | Joined):
        return str(message)
    return gettext(message) if message else message  # gettext("") is the catalog's header
