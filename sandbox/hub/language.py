"""The language of an analyst's sandbox: their browser's, else the hub's, else English.

The spawner reads ``Accept-Language`` of the request that started the server (JupyterHub
hands the spawner that request's handler), so a Chinese browser gets the Chinese scenario
notebooks (``notebooks_templates/zh``) in ``~/templates`` and ``DPSANDBOX_LANG=zh_CN`` for
the client library. Without a browser (a spawn through the API), ``DPSANDBOX_LANG`` of the
hub decides. Spawners of every profile use :func:`sandbox_language` and
:func:`templates_source`.
"""

from __future__ import annotations

import functools
import gettext
import os
from pathlib import Path
from typing import Any

__all__ = ["FOLDERS", "LOCALE_DIR", "catalog", "sandbox_language", "templates_source"]

LOCALE_DIR = Path(__file__).with_name("locale")  # the hub's catalog (babel.cfg, `make i18n`)

FOLDERS = {"zh_CN": "zh", "en": "en"}  # language -> folder of notebooks_templates


def _language(tag: str) -> str | None:
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return {"zh": "zh_CN", "en": "en"}.get(primary)


def from_accept_language(header: str | None) -> str | None:
    """The first of zh_CN / en the header asks for (by quality), or None."""
    ranked = []
    for index, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = _language(tag)
        if language and quality > 0:
            ranked.append((-quality, index, language))
    return min(ranked)[2] if ranked else None


def sandbox_language(handler: Any, environ: dict[str, str] | None = None) -> str:
    """``zh_CN`` or ``en`` for a server being spawned by ``handler`` (may be None)."""
    request = getattr(handler, "request", None)
    headers = getattr(request, "headers", None) or {}
    chosen = from_accept_language(headers.get("Accept-Language"))
    if chosen:
        return chosen
    hub_default = (environ if environ is not None else dict(os.environ)).get("DPSANDBOX_LANG", "")
    return _language(hub_default) or "en"


def templates_source(templates_dir: Path, language: str) -> Path:
    """The folder whose notebooks a new analyst gets (the flat folder if it has no languages)."""
    folder = templates_dir / FOLDERS.get(language, "en")
    return folder if folder.is_dir() else templates_dir


@functools.cache
def catalog(language: str) -> gettext.NullTranslations:
    """The hub's messages (pages and spawn refusals) in ``language`` (zh_CN or en)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation("messages", LOCALE_DIR, languages=[language], fallback=True)
