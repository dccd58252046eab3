"""Small pieces every service uses: the caller, clocks, ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.domain.errors import Forbidden
from gateway.domain.workflow import ANALYST_ROLES


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
            raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {self.role}")
        if full_scope and self.scope != "full":
            raise Forbidden("a sandbox token cannot do this; use the web console")


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
