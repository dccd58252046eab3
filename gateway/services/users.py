"""Accounts, logins and tokens."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from gateway.adapters.auth import TokenClaims, TokenService, check_password, hash_password
from gateway.adapters.db import Store
from gateway.adapters.db import tables as t
from gateway.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from gateway.domain.workflow import ANALYST_ROLES, DISABLE_NEEDS_REASON, ROLES, require_reason
from gateway.services.audit import AuditLog
from gateway.services.common import Principal, iso, now, parse_iso
from gateway.settings import Settings

USERNAME = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
MIN_PASSWORD = 8


def public_user(row: Any) -> dict[str, Any]:
    return {
        "username": row.username, "role": row.role, "org": row.org,
        "disabled": bool(row.disabled), "created_at": row.created_at,
    }


class UserService:
    def __init__(
        self, store: Store, audit: AuditLog, tokens: TokenService, settings: Settings
    ) -> None:
        self.store, self.audit, self.tokens, self.settings = store, audit, tokens, settings

    def create(
        self, actor: Principal, *, username: str, role: str, password: str, org: str | None = None
    ) -> dict[str, Any]:
        try:
            actor.require("admin", full_scope=True)
            if not USERNAME.match(username):
                raise InvalidRequest(
                    "username must be 2-32 characters: lowercase letters, digits, _ or -, "
                    "starting with a letter"
                )
            if role not in ROLES:
                raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
            if len(password) < MIN_PASSWORD:
                raise InvalidRequest(f"password must have at least {MIN_PASSWORD} characters")
            if role == "enterprise" and not org:
                raise InvalidRequest("an enterprise account needs an org")
            with self.store.write() as conn:
                if conn.execute(select(t.users.c.id).where(t.users.c.username == username)).first():
                    raise Conflict(f"user {username} already exists")
                row = {
                    "username": username, "role": role, "org": org or None,
                    "password_hash": hash_password(password), "disabled": False,
                    "failed_logins": 0, "created_at": iso(now()), "created_by": actor.username,
                }
                conn.execute(insert(t.users).values(**row))
                self.audit.append(conn, action="user.create", outcome="ok", actor=actor,
                                  detail={"username": username, "role": role, "org": org})
        except (InvalidRequest, Conflict, Forbidden) as exc:
            self.audit.denied(actor, "user.create", exc, detail={"username": username})
            raise
        return {"username": username, "role": role, "org": org or None, "disabled": False,
                "created_at": row["created_at"]}

    def list(self, actor: Principal) -> list[dict[str, Any]]:
        actor.require("admin", "auditor")
        with self.store.read() as conn:
            rows = conn.execute(select(t.users).order_by(t.users.c.username)).all()
        return [public_user(r) for r in rows]

    def set_disabled(self, actor: Principal, username: str, *, disabled: bool,
                     reason: str = "") -> dict[str, Any]:
        """Disabling says why (audited); enabling may."""
        actor.require("admin", full_scope=True)
        if username == actor.username:
            raise Forbidden("you cannot disable or enable your own account")
        reason = require_reason(reason, DISABLE_NEEDS_REASON) if disabled else reason.strip()
        with self.store.write() as conn:
            found = conn.execute(
                update(t.users).where(t.users.c.username == username)
                .values(disabled=disabled, failed_logins=0, locked_until=None)
            ).rowcount
            if not found:
                raise NotFound(f"no user {username}")
            self.audit.append(conn, action="user.disable" if disabled else "user.enable",
                              outcome="ok", actor=actor,
                              detail={"username": username, "reason": reason})
            row = conn.execute(select(t.users).where(t.users.c.username == username)).one()
        return public_user(row)

    def set_role(self, actor: Principal, username: str, *, role: str,
                 org: str | None = None, note: str = "") -> dict[str, Any]:
        """Change an account's role (and org). Its existing tokens stop working at once,
        because every request re-reads the role and refuses a token that carries another."""
        try:
            actor.require("admin", full_scope=True)
            if username == actor.username:
                raise Forbidden("you cannot change your own role")
            if role not in ROLES:
                raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
            if role == "enterprise" and not org:
                raise InvalidRequest("an enterprise account needs an org")
            with self.store.write() as conn:
                row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
                if row is None:
                    raise NotFound(f"no user {username}")
                conn.execute(update(t.users).where(t.users.c.id == row.id)
                             .values(role=role, org=org or None))
                self.audit.append(conn, action="user.role", outcome="ok", actor=actor,
                                  detail={"username": username, "from": row.role, "to": role,
                                          "org": org or None, "note": note.strip()})
                row = conn.execute(select(t.users).where(t.users.c.id == row.id)).one()
        except (InvalidRequest, NotFound, Forbidden) as exc:
            self.audit.denied(actor, "user.role", exc, detail={"username": username[:64]})
            raise
        return public_user(row)

    def principal(self, claims: TokenClaims) -> Principal:
        with self.store.read() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == claims.username)).first()
            # Revoking a session's first jti ends every token refreshed from it.
            ended = {claims.jti, claims.session_id or claims.jti}
            revoked = conn.execute(select(t.revoked_tokens.c.jti)
                                   .where(t.revoked_tokens.c.jti.in_(ended))).first()
        if revoked is not None:
            raise Unauthenticated("this token was signed out; sign in again")
        if row is None or row.disabled:
            raise Unauthenticated("this account no longer exists or is disabled")
        if row.role != claims.role:
            raise Unauthenticated("your role changed; sign in again")
        return Principal(username=row.username, role=row.role, org=row.org, scope=claims.scope)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Check a password; failures are audited and the account locks after too many."""
        moment = now()
        with self.store.read() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        locked = row is not None and row.locked_until and parse_iso(row.locked_until) > moment
        ok = check_password(password, row.password_hash if row else None)
        if row is None or row.disabled or locked or not ok:
            reason = ("locked" if locked else "disabled" if row is not None and row.disabled
                      else "bad credentials")
            self._login_failed(username, row, reason)
            time.sleep(0.2)  # slows guessing on top of the per-account limit
            if locked:
                raise Unauthenticated("too many failed sign-ins; this account is locked for a while")
            raise Unauthenticated("wrong username or password")
        actor = Principal(row.username, row.role, row.org)
        token, ttl = self.tokens.issue(username=row.username, role=row.role,
                                       ttl=self.settings.token_ttl_seconds)
        with self.store.write() as conn:
            conn.execute(update(t.users).where(t.users.c.id == row.id)
                         .values(failed_logins=0, locked_until=None))
            self.audit.append(conn, action="auth.login", outcome="ok", actor=actor,
                              detail={"token_expires_in": ttl, "scope": "full"})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}

    def _login_failed(self, username: str, row: Any, reason: str) -> None:
        with self.store.write() as conn:
            if row is not None and reason == "bad credentials":
                failures = (conn.execute(select(t.users.c.failed_logins)
                                         .where(t.users.c.id == row.id)).scalar() or 0) + 1
                values: dict[str, Any] = {"failed_logins": failures}
                if failures >= self.settings.login_max_failures:
                    lockout = timedelta(seconds=self.settings.login_lockout_seconds)
                    values = {"failed_logins": 0, "locked_until": iso(now() + lockout)}
                    reason = "bad credentials; account locked"
                conn.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
            self.audit.append(conn, action="auth.login", outcome="denied",
                              actor_name=username[:64],
                              detail={"reason": reason, "known_account": row is not None})

    def logout(self, actor: Principal, claims: TokenClaims, *, via: str) -> None:
        """End a token on the server: it is refused from now on, wherever it is presented."""
        with self.store.write() as conn:
            conn.execute(delete(t.revoked_tokens)
                         .where(t.revoked_tokens.c.expires_at < int(time.time()) - 60))
            conn.execute(insert(t.revoked_tokens).values(
                jti=claims.jti, username=claims.username, expires_at=claims.expires_at,
                revoked_at=iso(now())))
            self.audit.append(conn, action="auth.logout", outcome="ok", actor=actor,
                              detail={"via": via})

    def revoke_sandbox_session(self, *, jti: str, username: str) -> None:
        """The hub stopped a server: its token, and every token refreshed from it, end.

        ``jti`` is that of the token the hub handed out, which is the session id of its
        refreshes; none can outlive the sandbox session's maximum, so neither does the row.
        """
        until = int(time.time()) + self.settings.sandbox_session_max_seconds + 60
        with self.store.write() as conn:
            conn.execute(delete(t.revoked_tokens)
                         .where(t.revoked_tokens.c.expires_at < int(time.time()) - 60))
            if conn.execute(select(t.revoked_tokens.c.jti)
                            .where(t.revoked_tokens.c.jti == jti)).first() is None:
                conn.execute(insert(t.revoked_tokens).values(
                    jti=jti, username=username, expires_at=until, revoked_at=iso(now())))
            self.audit.append(conn, action="auth.sandbox_revoke", outcome="ok",
                              actor_name=username, detail={"jti": jti, "by": "jupyterhub"})

    def sandbox_token(self, username: str) -> dict[str, Any]:
        """A short-lived token for an analyst's sandbox (the hub asks, with its secret)."""
        with self.store.read() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        if row is None or row.disabled or row.role not in ANALYST_ROLES:
            raise Forbidden("sandbox tokens are only for active researcher and enterprise accounts")
        session_end = int(time.time()) + self.settings.sandbox_session_max_seconds
        token, ttl = self.tokens.issue(username=row.username, role=row.role, scope="sandbox",
                                       ttl=self.settings.sandbox_token_ttl_seconds,
                                       session_expires_at=session_end)
        self.audit.record(action="auth.sandbox_token", outcome="ok",
                          actor=Principal(row.username, row.role, row.org, "sandbox"),
                          detail={"token_expires_in": ttl, "issued_to": "jupyterhub"})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}

    def refresh(self, claims: TokenClaims) -> dict[str, Any]:
        """A fresh token with the same scope, never past the session's end."""
        actor = self.principal(claims)
        ttl_setting = (self.settings.sandbox_token_ttl_seconds if claims.scope == "sandbox"
                       else self.settings.token_ttl_seconds)
        if claims.session_expires_at <= int(time.time()) + 5:
            raise Unauthenticated("the session has reached its maximum length; sign in again")
        token, ttl = self.tokens.issue(username=actor.username, role=actor.role,
                                       scope=claims.scope, ttl=ttl_setting,
                                       session_expires_at=claims.session_expires_at,
                                       session_id=claims.session_id or claims.jti)
        self.audit.record(action="auth.refresh", outcome="ok", actor=actor,
                          detail={"token_expires_in": ttl, "scope": claims.scope})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}
