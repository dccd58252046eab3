"""The hub's pages (sign-in, home, navigation) in Chinese and English.

``install(c, console_url=...)``, called by jupyterhub_config.py, puts
``sandbox/hub/templates`` first in ``c.JupyterHub.template_paths``: each template extends
the stock one (``{% extends "templates/login.html" %}``) and overrides only the blocks
with text. The text goes through Jinja's i18n extension and gettext over the hub's own
catalog (``sandbox/hub/locale``, compiled by ``make i18n``; catalog "hub" in
gateway/i18n_catalogs.py).

The language is the request's ``Accept-Language`` (else the hub's ``DPSANDBOX_LANG``, else
English; :func:`sandbox.hub.language.sandbox_language`). JupyterHub passes templates no
request, so :func:`install` wraps ``BaseHandler.render_template`` to add ``hub_language``
to every page's namespace; the gettext functions read it from the template's context.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context

from sandbox.hub.language import LOCALE_DIR, catalog, sandbox_language

__all__ = ["LOCALE_DIR", "TEMPLATES", "install"]

TEMPLATES = Path(__file__).with_name("templates")


@pass_context
def page_gettext(context: Context, message: str) -> str:
    return catalog(str(context.get("hub_language") or "en")).gettext(message)


@pass_context
def page_ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return catalog(str(context.get("hub_language") or "en")).ngettext(singular, plural, n)


def _with_language(render: Any) -> Any:
    @functools.wraps(render)
    def render_template(handler: Any, name: str, sync: bool = False, **ns: Any) -> Any:
        for key in ("jinja2_env", "jinja2_env_sync"):
            env = handler.settings.get(key)
            if env is not None and env.globals.get("gettext") is not page_gettext:
                env.install_gettext_callables(page_gettext, page_ngettext, newstyle=True)
        ns.setdefault("hub_language", sandbox_language(handler))
        return render(handler, name, sync=sync, **ns)

    render_template.dpsandbox_pages = True  # type: ignore[attr-defined]
    return render_template


def install(c: Any, *, console_url: str) -> None:
    """Configure the hub (``c`` is jupyterhub_config.py's config) to serve these pages."""
    from jupyterhub.handlers.base import BaseHandler

    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.jinja_environment_options = {"extensions": ["jinja2.ext.i18n"]}
    c.JupyterHub.template_vars = {"console_url": console_url}
    if not getattr(BaseHandler.render_template, "dpsandbox_pages", False):
        BaseHandler.render_template = _with_language(BaseHandler.render_template)
