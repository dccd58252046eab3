"""Accounts and signed-out tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import RecordRepo, Repo, record_of
from gateway.domain.paging import Found, Window
from gateway.domain.records import User

R = t.revoked_tokens.c


def _user(row: Any) -> User:
    return record_of(User, row, disabled=bool(row.disabled), failed_logins=row.failed_logins or 0)


class UserRepo(RecordRepo[User]):
    table = t.users
    to_record = staticmethod(_user)

    def get(self, username: str) -> User | None:
        return self.first(t.users.c.username == username)

    def all(self) -> list[User]:
        return [_user(r) for r in self.conn.execute(select(t.users).order_by(t.users.c.username))]

    def search(self, window: Window) -> Found[User]:
        """A page of accounts by name, searched in name, role and org."""
        U = t.users.c
        return self.window(select(t.users), window, searched=(U.username, U.role, U.org),
                           order=(U.username,)).map(_user)

    def orgs(self) -> list[str]:
        """Every org an account belongs to, sorted."""
        return [str(org) for org in self.conn.execute(
            select(t.users.c.org).where(t.users.c.org.is_not(None)).distinct()
            .order_by(t.users.c.org)).scalars()]

    def add(self, *, username: str, role: str, org: str | None, password_hash: str,
            created_at: str, created_by: str) -> User:
        self.conn.execute(insert(t.users).values(
            username=username, role=role, org=org, password_hash=password_hash, disabled=False,
            failed_logins=0, created_at=created_at, created_by=created_by))
        user = self.get(username)
        assert user is not None
        return user

    def update(self, username: str, **values: Any) -> bool:
        """Set columns (role, org, disabled, failed_logins, locked_until); False if no such user."""
        return bool(self.conn.execute(update(t.users).where(t.users.c.username == username)
                                      .values(**values)).rowcount)


class TokenRepo(Repo):
    """Tokens signed out before they expire (refused wherever they are presented)."""

    def is_revoked(self, *jtis: str) -> bool:
        return self.conn.execute(select(R.jti).where(R.jti.in_(set(jtis)))).first() is not None

    def revoke(self, *, jti: str, username: str, expires_at: int, revoked_at: str,
               forget_before: int) -> None:
        """Refuse ``jti`` from now on (again is a no-op); forget rows expired before
        ``forget_before`` (their tokens are refused by their own expiry)."""
        self.conn.execute(delete(t.revoked_tokens).where(R.expires_at < forget_before))
        if not self.is_revoked(jti):
            self.conn.execute(insert(t.revoked_tokens).values(
                jti=jti, username=username, expires_at=expires_at, revoked_at=revoked_at))
