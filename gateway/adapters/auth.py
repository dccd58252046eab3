"""Passwords (argon2) and tokens (Ed25519-signed JWTs via pyjwt).

The keys come from ``adapters/secrets.py`` (shared by replicas). One key signs; its token
header names it (``kid``); tokens signed by a retired key still verify while that key is
among the verification keys, and are refused once it is dropped. Verification pins the
algorithm list to EdDSA and requires every claim we issue, so ``alg: none`` and
HS256-signed-with-the-public-key tokens are refused. pyjwt's errors are translated here,
once, into :class:`Unauthenticated`.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.adapters.secrets import key_id
from gateway.domain.errors import Unauthenticated
from gateway.domain.text import _l

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "role", "jti"]
_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class TokenClaims:
    username: str
    role: str
    scope: str
    jti: str
    expires_at: int
    session_expires_at: int
    # The jti of the session's first token, carried by every refresh (``sid``): revoking
    # it ends the tokens refreshed from it too. Older tokens have none: their own jti.
    session_id: str = ""


class TokenService:
    def __init__(self, key: Ed25519PrivateKey, *, issuer: str, audience: str,
                 verify_keys: tuple[Ed25519PublicKey, ...] = ()) -> None:
        self._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        self.key_id = key_id(self.public_key)
        self._verify_keys = {key_id(k): k for k in verify_keys}
        self._verify_keys[self.key_id] = self.public_key
        self.issuer = issuer
        self.audience = audience

    def issue(
        self, *, username: str, role: str, ttl: int, scope: str = "full",
        session_expires_at: int | None = None, session_id: str | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        exp = now + ttl
        if session_expires_at is not None:
            exp = min(exp, session_expires_at)
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": username, "role": role,
            "scope": scope, "iat": now, "nbf": now, "exp": exp, "jti": jti,
            "sexp": session_expires_at or exp, "sid": session_id or jti,
        }
        return (jwt.encode(claims, self._key, algorithm=ALGORITHM,
                           headers={"kid": self.key_id}), exp - now)

    def _key_for(self, token: str) -> Ed25519PublicKey:
        """The verification key the token's header names (none named: the signing key's,
        as tokens issued before key ids had none)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_l("invalid token (%(name)s)", name=type(exc).__name__)) from exc
        key = self._verify_keys.get(kid) if isinstance(kid, str) else (
            self.public_key if kid is None else None)
        if key is None:
            raise Unauthenticated(_l("token signed by a key this gateway no longer accepts; "
                                     "sign in again"))
        return key

    def verify(self, token: str) -> TokenClaims:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(_l("token expired; sign in again")) from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthenticated(_l("token not yet valid")) from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated(_l("token is for another audience")) from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_l("invalid token (%(name)s)", name=type(exc).__name__)) from exc
        scope = claims.get("scope", "full")
        session_id = claims.get("sid", claims["jti"])
        if (not isinstance(claims["sub"], str) or scope not in ("full", "sandbox")
                or not isinstance(session_id, str)):
            raise Unauthenticated(_l("invalid token claims"))
        return TokenClaims(
            username=claims["sub"], role=str(claims["role"]), scope=scope, jti=claims["jti"],
            expires_at=int(claims["exp"]), session_expires_at=int(claims.get("sexp", claims["exp"])),
            session_id=session_id,
        )
