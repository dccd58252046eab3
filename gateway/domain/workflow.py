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


def next_state(table: dict[str, dict[str, str]], current: str, action: str, what: str) -> str:
    target = table.get(current, {}).get(action)
    if target is None:
        raise Conflict(f"cannot {action} this {what}: it is {current}")
    return target


def check_not_own(*, actor: str, owner: str, what: str) -> None:
    """Separation of duties: nobody decides on their own application or query."""
    if actor == owner:
        raise Forbidden(f"you cannot decide on your own {what}")


REVOKE_NEEDS_REASON = _l("revoking a grant needs a reason: the analyst sees it")
DISABLE_NEEDS_REASON = _l("disabling an account needs a reason: it is kept in the audit log")


def require_reason(reason: str | None, refusal: Text) -> str:
    """An irreversible action says why (kept in the audit log, shown to whom it concerns)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest(refusal)
    return reason
