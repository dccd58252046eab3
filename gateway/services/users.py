"""Accounts, logins and tokens."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from gateway.adapters.auth import TokenClaims, TokenService, check_password, hash_password
from gateway.adapters.db import Store
from gateway.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from gateway.domain.paging import Found, Window
from gateway.domain.records import User
from gateway.domain.workflow import ANALYST_ROLES, DISABLE_NEEDS_REASON, ROLES, require_reason
from gateway.i18n import _l
from gateway.services.audit import AuditLog
from gateway.services.common import Principal, iso, now, parse_iso
from gateway.settings import Settings

USERNAME = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
MIN_PASSWORD = 8


def public_user(user: User) -> dict[str, Any]:
    return {
        "username": user.username, "role": user.role, "org": user.org,
        "disabled": user.disabled, "created_at": user.created_at,
    }


class UserService:
    def __init__(
        self, store: Store, audit: AuditLog, tokens: TokenService, settings: Settings
    ) -> None:
        self.store, self.audit, self.tokens, self.settings = store, audit, tokens, settings
        self.refusals = audit.refusals

    def create(
        self, actor: Principal, *, username: str, role: str, password: str, org: str | None = None
    ) -> dict[str, Any]:
        with self.refusals(actor, "user.create", detail={"username": username[:64]}):
            actor.require("admin", full_scope=True)
            if not USERNAME.match(username):
                raise InvalidRequest(
                    _l(
                        "username must be 2-32 characters: lowercase letters, digits, _ or -, "
                        "starting with a letter")
                )
            if role not in ROLES:
                raise InvalidRequest(_l("role must be one of %(roles)s", roles=', '.join(ROLES)))
            if len(password) < MIN_PASSWORD:
                raise InvalidRequest(_l(
                    "password must have at least %(min_password)s characters",
                    min_password=MIN_PASSWORD))
            if role == "enterprise" and not org:
                raise InvalidRequest(_l("an enterprise account needs an org"))
            with self.store.writing() as tx:
                if tx.users.get(username) is not None:
                    raise Conflict(_l("user %(username)s already exists", username=username))
                user = tx.users.add(username=username, role=role, org=org or None,
                                    password_hash=hash_password(password), created_at=iso(now()),
                                    created_by=actor.username)
                self.audit.append(tx, action="user.create", outcome="ok", actor=actor,
                                  detail={"username": username, "role": role, "org": org})
        return public_user(user)

    def list(self, actor: Principal) -> list[dict[str, Any]]:
        with self.refusals(actor, "user.list"):
            actor.require("admin", "auditor")
        with self.store.reading() as tx:
            users = tx.users.all()
        return [public_user(u) for u in users]

    def page(self, actor: Principal, window: Window) -> Found[dict[str, Any]]:
        """One page of accounts (admins and auditors), searched in the store."""
        with self.refusals(actor, "user.list"):
            actor.require("admin", "auditor")
        with self.store.reading() as tx:
            return tx.users.search(window).map(public_user)

    def get(self, actor: Principal, username: str) -> dict[str, Any]:
        """One account (admins and auditors)."""
        with self.refusals(actor, "user.show", detail={"username": username[:64]}):
            actor.require("admin", "auditor")
            with self.store.reading() as tx:
                user = tx.users.get(username)
            if user is None:
                raise NotFound(_l("no user %(username)s", username=username))
        return public_user(user)

    def orgs(self, actor: Principal) -> tuple[str, ...]:
        """The orgs accounts belong to (for a form's choices)."""
        with self.refusals(actor, "user.list"):
            actor.require("admin", "auditor")
        with self.store.reading() as tx:
            return tuple(tx.users.orgs())

    def set_disabled(self, actor: Principal, username: str, *, disabled: bool,
                     reason: str = "") -> dict[str, Any]:
        """Disabling says why (audited); enabling may."""
        action = "user.disable" if disabled else "user.enable"
        with self.refusals(actor, action, detail={"username": username[:64]}):
            actor.require("admin", full_scope=True)
            if username == actor.username:
                raise Forbidden(_l("you cannot disable or enable your own account"))
            reason = (require_reason(reason, DISABLE_NEEDS_REASON) if disabled
                      else reason.strip())
            with self.store.writing() as tx:
                if not tx.users.update(username, disabled=disabled, failed_logins=0,
                                       locked_until=None):
                    raise NotFound(_l("no user %(username)s", username=username))
                self.audit.append(tx, action=action, outcome="ok", actor=actor,
                                  detail={"username": username, "reason": reason})
                user = tx.users.get(username)
        assert user is not None
        return public_user(user)

    def set_role(self, actor: Principal, username: str, *, role: str,
                 org: str | None = None, note: str = "") -> dict[str, Any]:
        """Change an account's role (and org). Its existing tokens stop working at once,
        because every request re-reads the role and refuses a token that carries another."""
        with self.refusals(actor, "user.role", detail={"username": username[:64]}):
            actor.require("admin", full_scope=True)
            if username == actor.username:
                raise Forbidden(_l("you cannot change your own role"))
            if role not in ROLES:
                raise InvalidRequest(_l("role must be one of %(roles)s", roles=', '.join(ROLES)))
            if role == "enterprise" and not org:
                raise InvalidRequest(_l("an enterprise account needs an org"))
            with self.store.writing() as tx:
                before = tx.users.get(username)
                if before is None:
                    raise NotFound(_l("no user %(username)s", username=username))
                tx.users.update(username, role=role, org=org or None)
                self.audit.append(tx, action="user.role", outcome="ok", actor=actor,
                                  detail={"username": username, "from": before.role, "to": role,
                                          "org": org or None, "note": note.strip()})
                user = tx.users.get(username)
        assert user is not None
        return public_user(user)

    def authenticate(self, token: str | None, *, action: str) -> tuple[TokenClaims, Principal]:
        """A bearer token -> its claims and the caller as the store knows them now; a refusal
        is audited as ``action`` (e.g. ``http GET /v1/users``) under the name the token claims."""
        claimed: list[str] = []
        try:
            if not token:
                raise Unauthenticated(_l("sign in first: send Authorization: Bearer <token>"))
            claims = self.tokens.verify(token)
            claimed.append(claims.username)
            return claims, self.principal(claims)
        except Unauthenticated as exc:
            self.refusals.audit(None, action, exc, actor_name=claimed[0] if claimed else None)
            raise

    def principal(self, claims: TokenClaims) -> Principal:
        with self.store.reading() as tx:
            user = tx.users.get(claims.username)
            # Revoking a session's first jti ends every token refreshed from it.
            revoked = tx.tokens.is_revoked(claims.jti, claims.session_id or claims.jti)
        if revoked:
            raise Unauthenticated(_l("this token was signed out; sign in again"))
        if user is None or user.disabled:
            raise Unauthenticated(_l("this account no longer exists or is disabled"))
        if user.role != claims.role:
            raise Unauthenticated(_l("your role changed; sign in again"))
        return Principal(username=user.username, role=user.role, org=user.org, scope=claims.scope)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Check a password; failures are audited and the account locks after too many.

        Each attempt on an account is counted in the store *before* its password is
        evaluated (:meth:`_claim_attempt`), so concurrent guesses never evaluate more than
        ``login_max_failures`` passwords before the lock is set.
        """
        with self.store.reading() as tx:
            row = tx.users.get(username)
        if row is None or row.disabled:
            check_password(password, None)  # the same work as for a real account
            self._login_failed(username, row, "disabled" if row is not None else
                               "bad credentials")
            time.sleep(0.2)
            raise Unauthenticated(_l("wrong username or password"))
        claim = self._claim_attempt(row.username)
        if claim is None:
            self._login_failed(username, row, "locked")
            time.sleep(0.2)
            raise Unauthenticated(_l("too many failed sign-ins; this account is locked for a while"))
        if not check_password(password, row.password_hash):
            self._login_failed(username, row, "bad credentials", claim=claim)
            time.sleep(0.2)  # slows guessing on top of the per-account limit
            raise Unauthenticated(_l("wrong username or password"))
        actor = Principal(row.username, row.role, row.org)
        token, ttl = self.tokens.issue(username=row.username, role=row.role,
                                       ttl=self.settings.token_ttl_seconds)
        with self.store.writing() as tx:
            tx.users.update(row.username, failed_logins=0, locked_until=None)
            self.audit.append(tx, action="auth.login", outcome="ok", actor=actor,
                              detail={"token_expires_in": ttl, "scope": "full"})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}

    def _claim_attempt(self, username: str) -> int | None:
        """Count one sign-in attempt, atomically; its number, or None when the account is
        locked or its last allowed attempts are being evaluated right now."""
        with self.store.writing() as tx:  # serialised: the check and the count are one step
            current = tx.users.get(username)
            if current is None:
                return None
            failures = current.failed_logins
            if current.locked_until:
                if parse_iso(current.locked_until) > now():
                    return None
                failures = 0  # the lock has run out: a fresh allowance
            if failures >= self.settings.login_max_failures:
                return None
            tx.users.update(username, failed_logins=failures + 1, locked_until=None)
        return failures + 1

    def _login_failed(self, username: str, row: User | None, reason: str, *,
                      claim: int | None = None) -> None:
        with self.store.writing() as tx:
            if row is not None and claim is not None \
                    and claim >= self.settings.login_max_failures:
                lockout = timedelta(seconds=self.settings.login_lockout_seconds)
                tx.users.update(row.username, failed_logins=0,
                                locked_until=iso(now() + lockout))
                reason = "bad credentials; account locked"
            self.audit.append(tx, action="auth.login", outcome="denied",
                              actor_name=username[:64],
                              detail={"reason": reason, "known_account": row is not None})

    def logout(self, actor: Principal, claims: TokenClaims, *, via: str) -> None:
        """End a token on the server: it is refused from now on, wherever it is presented."""
        with self.store.writing() as tx:
            tx.tokens.revoke(jti=claims.jti, username=claims.username,
                             expires_at=claims.expires_at, revoked_at=iso(now()),
                             forget_before=int(time.time()) - 60)
            self.audit.append(tx, action="auth.logout", outcome="ok", actor=actor,
                              detail={"via": via})

    def revoke_sandbox_session(self, *, jti: str, username: str, hub_secret_ok: bool) -> None:
        """The hub stopped a server: its token, and every token refreshed from it, end.

        ``jti`` is that of the token the hub handed out, which is the session id of its
        refreshes; none can outlive the sandbox session's maximum, so neither does the row.
        """
        with self.refusals(None, "auth.sandbox_revoke", detail={"username": username[:64]}):
            if not hub_secret_ok:
                raise Unauthenticated(_l("this endpoint is for the hub; a valid X-Hub-Secret is required"))
        until = int(time.time()) + self.settings.sandbox_session_max_seconds + 60
        with self.store.writing() as tx:
            tx.tokens.revoke(jti=jti, username=username, expires_at=until,
                             revoked_at=iso(now()), forget_before=int(time.time()) - 60)
            self.audit.append(tx, action="auth.sandbox_revoke", outcome="ok",
                              actor_name=username, detail={"jti": jti, "by": "jupyterhub"})

    def sandbox_token(self, username: str, *, hub_secret_ok: bool) -> dict[str, Any]:
        """A short-lived token for an analyst's sandbox (the hub asks, with its secret)."""
        with self.refusals(None, "auth.sandbox_token", detail={"username": username[:64]}):
            if not hub_secret_ok:
                raise Unauthenticated(_l("this endpoint is for the hub; a valid X-Hub-Secret is required"))
            with self.store.reading() as tx:
                row = tx.users.get(username)
            if row is None or row.disabled or row.role not in ANALYST_ROLES:
                raise Forbidden(_l("sandbox tokens are only for active researcher and enterprise accounts"))
        session_end = int(time.time()) + self.settings.sandbox_session_max_seconds
        token, ttl = self.tokens.issue(username=row.username, role=row.role, scope="sandbox",
                                       ttl=self.settings.sandbox_token_ttl_seconds,
                                       session_expires_at=session_end)
        self.audit.record(action="auth.sandbox_token", outcome="ok",
                          actor=Principal(row.username, row.role, row.org, "sandbox"),
                          detail={"token_expires_in": ttl, "issued_to": "jupyterhub"})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}

    def refresh(self, claims: TokenClaims, actor: Principal) -> dict[str, Any]:
        """A fresh token with the same scope, never past the session's end."""
        ttl_setting = (self.settings.sandbox_token_ttl_seconds if claims.scope == "sandbox"
                       else self.settings.token_ttl_seconds)
        with self.refusals(actor, "auth.refresh"):
            if claims.session_expires_at <= int(time.time()) + 5:
                raise Unauthenticated(_l("the session has reached its maximum length; sign in again"))
        token, ttl = self.tokens.issue(username=actor.username, role=actor.role,
                                       scope=claims.scope, ttl=ttl_setting,
                                       session_expires_at=claims.session_expires_at,
                                       session_id=claims.session_id or claims.jti)
        self.audit.record(action="auth.refresh", outcome="ok", actor=actor,
                          detail={"token_expires_in": ttl, "scope": claims.scope})
        return {"access_token": token, "token_type": "bearer", "expires_in": ttl}
