"""What the console's form routes share: the redirect after a change and its notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from gateway.domain.errors import Conflict, InvalidRequest, NotFound
from gateway.domain.paging import Window
from gateway.i18n import N_, _
from gateway.web.forms import Form

T = TypeVar("T")

# A list page's search box and page number (``?q=...&page=...``), as every list takes them.
Search = Annotated[str, Query(max_length=64)]
ListPage = Annotated[int, Query(alias="page", ge=1, le=100_000)]


def list_window(q: Search = "", page_number: ListPage = 1) -> Window:
    """The part of a list asked for: what its search box holds, and which page."""
    return Window(q, page_number)


ListWindow = Annotated[Window, Depends(list_window)]

NOTICES = {
    "approved": N_("The application was approved and its grant created."),
    "extended": N_("The application was approved by extending the existing grant."),
    "rejected": N_("The application was rejected; the applicant sees your note."),
    "released": N_("The query was computed, charged and released to the analyst."),
    "query-rejected": N_("The query was rejected; nothing was computed or charged."),
    "revoked": N_("The grant was revoked; no more queries can draw on it."),
    "grant-extended": N_("The grant was extended."),
    "given": N_("The grant was created."),
    "created": N_("The account was created."),
    "disabled": N_("The account was disabled; its sessions end at their next request."),
    "enabled": N_("The account was enabled."),
    "role-changed": N_("The role was changed; the account's open sessions end at their next "
                       "request."),
    "withdrawn": N_("The application was withdrawn."),
    "chain-verified": N_("The entire chain was verified from its first entry."),
    "applied": N_("Your application was sent. Open datasets are granted at once; others wait "
                  "for an administrator."),
}


def back(location: str, done: str) -> RedirectResponse:
    sep = "&" if "?" in location else "?"
    return RedirectResponse(f"{location}{sep}done={done}", status_code=303)


def notice(request: Request) -> str | None:
    found = NOTICES.get(request.query_params.get("done", ""))
    return _(found) if found else None


def status_for(form: Form | None) -> int:
    """A page shown again with a form the user must correct answers 422, else 200."""
    return 422 if form is not None and not form.ok else 200


def attempt(request: Request, form: Form, change: Callable[[], T]) -> T | None:
    """Make a checked form's change; a refusal (bad value, conflict, gone), audited by the
    service that refused, is shown at the top of the form, the input kept. Anything else is
    an error page."""
    if not form.ok:
        return None
    try:
        return change()
    except (InvalidRequest, Conflict, NotFound) as exc:
        form.refused(exc)
        return None
