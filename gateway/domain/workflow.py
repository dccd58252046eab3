"""Access workflow: the states of a data-use application and of a restricted query.

    application: pending -> approved | rejected | withdrawn
    query:       pending_review -> released | rejected;  running -> released | error
"""

from __future__ import annotations

from gateway.domain.errors import Conflict, Forbidden, InvalidRequest
from gateway.domain.text import Text
from gateway.domain.text import lazy_gettext as _l

ROLES = ("researcher", "enterprise", "admin", "auditor")
ANALYST_ROLES = ("researcher", "enterprise")

APPLICATION_TRANSITIONS: dict[str, dict[str, str]] = {
    "pending": {"approve": "approved", "reject": "rejected", "withdraw": "withdrawn"},
    "approved": {},
    "rejected": {},
    "withdrawn": {},
}

QUERY_TRANSITIONS: dict[str, dict[str, str]] = {
    "pending_review": {"release": "released", "reject": "rejected"},
    "running": {"finish": "released", "fail": "error"},
    "released": {},
    "rejected": {},
    "error": {},
}


# The words the two refusals below put into their sentences, translatable one by one.
WORDS: dict[str, Text] = {
    "approve": _l("approve"), "reject": _l("reject"), "withdraw": _l("withdraw"),
    "release": _l("release"), "finish": _l("finish"), "fail": _l("fail"),
    "application": _l("application"), "data-use application": _l("data-use application"),
    "query": _l("query"), "pending": _l("pending"), "approved": _l("approved"),
    "rejected": _l("rejected"), "withdrawn": _l("withdrawn"), "released": _l("released"),
    "pending_review": _l("pending review"), "running": _l("running"), "error": _l("error"),
    "active": _l("active"), "revoked": _l("revoked"), "expired": _l("expired"),
    "researcher": _l("researcher"), "enterprise": _l("enterprise"), "admin": _l("admin"),
    "auditor": _l("auditor"), "open": _l("open"), "conditional": _l("conditional"),
    "restricted": _l("restricted"), "all": _l("all"),
}


def word(value: str) -> Text | str:
    """A state, action or role named inside a sentence, in the reader's language."""
    return WORDS.get(value, value)


def next_state(table: dict[str, dict[str, str]], current: str, action: str, what: str) -> str:
    target = table.get(current, {}).get(action)
    if target is None:
        raise Conflict(_l("cannot %(action)s this %(what)s: it is %(current)s",
                          action=word(action), what=word(what), current=word(current)))
    return target


def check_not_own(*, actor: str, owner: str, what: str) -> None:
    """Separation of duties: nobody decides on their own application or query."""
    if actor == owner:
        raise Forbidden(_l("you cannot decide on your own %(what)s", what=word(what)))


REVOKE_NEEDS_REASON = _l("revoking a grant needs a reason: the analyst sees it")
DISABLE_NEEDS_REASON = _l("disabling an account needs a reason: it is kept in the audit log")


def require_reason(reason: str | None, refusal: Text) -> str:
    """An irreversible action says why (kept in the audit log, shown to whom it concerns)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest(refusal)
    return reason
