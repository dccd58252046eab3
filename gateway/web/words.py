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

# Every action the audit log records (tests/unit/test_console_words.py checks the code for
# others), with what it means; the log's action filter offers them as choices.
ACTIONS = {
    "auth.login": N_("sign-in (or a failed one)"),
    "auth.logout": N_("sign-out"),
    "auth.refresh": N_("token refreshed"),
    "auth.sandbox_token": N_("sandbox token issued"),
    "auth.sandbox_revoke": N_("sandbox token ended"),
    "catalog.list": N_("catalog read"),
    "catalog.describe": N_("dataset description read"),
    "catalog.dummy": N_("synthetic rows drawn"),
    "dataset.register": N_("dataset registered"),
    "request.create": N_("application sent"),
    "request.auto_approve": N_("application approved automatically (open data)"),
    "request.approve": N_("application approved"),
    "request.reject": N_("application rejected"),
    "request.withdraw": N_("application withdrawn"),
    "request.list": N_("applications listed"),
    "request.show": N_("application read"),
    "grant.show": N_("grant read"),
    "query.show": N_("query read"),
    "query.list": N_("queries listed"),
    "user.list": N_("accounts listed"),
    "user.show": N_("account read"),
    "audit.list": N_("audit log read"),
    "audit.entry": N_("audit entry read"),
    "audit.verify": N_("audit chain verified"),
    "grant.create": N_("grant given"),
    "grant.extend": N_("grant extended"),
    "grant.revoke": N_("grant revoked"),
    "query": N_("query"),
    "query.preview": N_("query previewed (cost and accuracy)"),
    "query.submit": N_("query held for review"),
    "query.charge": N_("budget charged for a query"),
    "query.release": N_("query result released"),
    "query.review": N_("restricted query reviewed"),
    "user.create": N_("account created"),
    "user.disable": N_("account disabled"),
    "user.enable": N_("account enabled"),
    "user.role": N_("role changed"),
    "audit.export": N_("audit log exported"),
}


def action_name(action: str) -> str:
    return _(ACTIONS[action]) if action in ACTIONS else action


ACTION_GROUPS = {
    "auth": N_("Sign-in and tokens"), "catalog": N_("Catalog"), "dataset": N_("Datasets"),
    "request": N_("Applications"), "grant": N_("Grants"), "query": N_("Queries"),
    "user": N_("Accounts"), "audit": N_("Audit log"),
}


def action_groups() -> list[tuple[str, list[str]]]:
    """The known actions grouped by what they are about, for the filter's choices."""
    groups: dict[str, list[str]] = {}
    for action in ACTIONS:
        groups.setdefault(action.split(".")[0], []).append(action)
    return [(_(ACTION_GROUPS.get(key, key)), names) for key, names in groups.items()]
