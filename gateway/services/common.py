"""Small pieces every service uses: the caller, clocks, ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.domain.errors import Forbidden
from gateway.domain.text import Joined
from gateway.domain.workflow import ANALYST_ROLES, word
from gateway.i18n import _l

OR = _l(" or ")  # between the roles a refusal names


@dataclass(frozen=True)
class Principal:
    """Who is calling: from a verified token, re-read from the store on every request."""

    username: str
    role: str
    org: str | None = None
    scope: str = "full"

    @property
    def is_analyst(self) -> bool:
        return self.role in ANALYST_ROLES

    def require(self, *roles: str, full_scope: bool = False) -> None:
        if self.role not in roles:
            raise Forbidden(_l("this needs the role %(roles)s; you are %(role)s",
                               roles=Joined(tuple(word(r) for r in roles), OR),
                               role=word(self.role)))
        if full_scope and self.scope != "full":
            raise Forbidden(_l("a sandbox token cannot do this; use the web console"))


SYSTEM = Principal(username="system", role="admin")
READERS = ("admin", "auditor")  # who may read every record and the audit log


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def in_days(days: int) -> str:
    return iso(now() + timedelta(days=days))


def new_id() -> str:
    return uuid.uuid4().hex
