"""The client's own messages and displays in the analyst's language (zh-CN or English).

The sandbox has no gateway code, so the library ships its own gettext catalog:
``sandbox/client/locale/zh_CN/LC_MESSAGES/messages.mo``, compiled from the ``.po``
beside it with Babel at build time (``make i18n``, catalog "client"; see docs/i18n.md).
At run time only the standard library's :mod:`gettext` reads it.

The language is ``DPSANDBOX_LANG`` (``zh_CN``, ``zh-CN``, ``zh``, ``en``, ...), else the
locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``); English when neither names
Chinese. It is read at each message, so changing ``DPSANDBOX_LANG`` in a running kernel
takes effect at once. The gateway is asked for the same language (``Accept-Language``),
so its error messages match.
"""

from __future__ import annotations

import functools
import gettext
import os
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "_", "accept_language", "language", "ngettext"]

DOMAIN = "messages"
LOCALE_DIR = Path(__file__).with_name("locale")
LANG_ENV = "DPSANDBOX_LANG"
_LOCALE_ENVS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def _normalize(value: str) -> str | None:
    """``zh_CN``/``en`` for a language tag or locale name; None when it names neither."""
    tag = value.strip().split(":")[0].split(".")[0].replace("-", "_").lower()
    if tag.startswith("zh"):
        return "zh_CN"
    if tag.startswith("en") or tag in ("c", "posix"):
        return "en"
    return None


def language() -> str:
    """``zh_CN`` or ``en``: what this library speaks now."""
    explicit = os.environ.get(LANG_ENV, "")
    if explicit and _normalize(explicit):
        return _normalize(explicit) or "en"
    for name in _LOCALE_ENVS:
        value = os.environ.get(name, "")
        if value:
            return _normalize(value) or "en"
    return "en"


@functools.cache
def _catalog(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """``message`` in the current language (English when no translation is shipped)."""
    return _catalog(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _catalog(language()).ngettext(singular, plural, n)


def accept_language() -> str:
    """The ``Accept-Language`` header asking the gateway for the same language."""
    return "zh-CN,zh;q=0.9,en;q=0.5" if language() == "zh_CN" else "en"
