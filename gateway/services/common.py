"""Small pieces every service uses: the caller, clocks, ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway.domain.budget import DELTA_SCALE, EPSILON_SCALE
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


def eps_text(units: int | None) -> str | None:
    """Exact decimal text of an epsilon in 1e-9 units (what the audit log stores)."""
    if units is None:
        return None
    return _plain(Decimal(units) / EPSILON_SCALE)


def delta_text(units: int | None) -> str | None:
    if units is None:
        return None
    return _plain(Decimal(units) / DELTA_SCALE)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"
