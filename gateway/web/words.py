"""The console's names for the system's fixed values (roles, statuses, access levels).

The stored values stay English codes (they are the API's and the audit log's); people see
them translated. A value without a name here is shown as it is.
"""

from __future__ import annotations

from gateway.i18n import N_, _

ROLES = {
    "researcher": N_("researcher"),
    "enterprise": N_("enterprise"),
    "admin": N_("admin"),
    "auditor": N_("auditor"),
}
STATUSES = {
    # applications
    "pending": N_("pending"), "approved": N_("approved"), "rejected": N_("rejected"),
    "withdrawn": N_("withdrawn"), "all": N_("all"),
    # grants
    "active": N_("active"), "revoked": N_("revoked"), "expired": N_("expired"),
    "exhausted": N_("exhausted"),
    # queries
    "released": N_("released"), "pending_review": N_("pending review"), "error": N_("error"),
    "denied": N_("denied"), "cached": N_("cached"), "running": N_("running"),
    # audit outcomes, accounts
    "ok": N_("ok"), "disabled": N_("disabled"),
    # access levels
    "open": N_("open"), "conditional": N_("conditional"), "restricted": N_("restricted"),
}


def role_name(role: str | None) -> str:
    return _(ROLES[role]) if role in ROLES else (role or "")


def status_name(value: str | None) -> str:
    if value in STATUSES:
        return _(STATUSES[value])
    return (value or "").replace("_", " ")
