"""The gateway's secrets, from one place every replica shares.

Four secrets: the key that signs tokens (``signing_key.pem``, Ed25519 PEM), keys that
still verify tokens but sign none (``verify_keys.pem``: PEM keys, public or private, one
after the other; optional), the hub's secret (``hub_secret``) and the console's CSRF
secret (``console_secret``). Each is looked up in this order, first found wins:

1. an environment variable (a Kubernetes secret given as env): ``DPSANDBOX_SIGNING_KEY``,
   ``DPSANDBOX_VERIFY_KEYS``, ``DPSANDBOX_HUB_SECRET``, ``DPSANDBOX_CONSOLE_SECRET``;
2. the file of that name in ``DPSANDBOX_SECRETS_DIR`` (a mounted Kubernetes secret, or a
   directory given to every replica). With the directory set, a missing secret (other
   than ``verify_keys.pem``) stops the gateway: a replica must never make one of its own,
   or its tokens would fail on its peers;
3. the private state directory (``$DPSANDBOX_HOME/state``), where a gateway on one machine
   creates them on first start (0600).

Tokens carry their key's id (``kid``, the RFC 7638 thumbprint of its public key), so a
rotation is: add the new key to ``verify_keys`` everywhere, then make it the signing key
and move the old one to ``verify_keys`` until the longest token issued under it has
expired, then drop it (``docs/deploy/replicas.md``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.domain.errors import InvalidRequest
from gateway.domain.text import _l

log = logging.getLogger(__name__)
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


class SecretMisconfigured(InvalidRequest):
    """A secret is missing from the shared place, or is not what it should be."""


@dataclass(frozen=True)
class Secret:
    file: str  # its name in DPSANDBOX_SECRETS_DIR and in the state directory
    env: str
    required: bool = True


SIGNING_KEY = Secret("signing_key.pem", "DPSANDBOX_SIGNING_KEY")
VERIFY_KEYS = Secret("verify_keys.pem", "DPSANDBOX_VERIFY_KEYS", required=False)
HUB_SECRET = Secret("hub_secret", "DPSANDBOX_HUB_SECRET")
CONSOLE_SECRET = Secret("console_secret", "DPSANDBOX_CONSOLE_SECRET")
SECRETS = (SIGNING_KEY, VERIFY_KEYS, HUB_SECRET, CONSOLE_SECRET)
SECRETS_DIR_ENV = "DPSANDBOX_SECRETS_DIR"


@dataclass(frozen=True)
class GatewaySecrets:
    signing_key: Ed25519PrivateKey
    verify_keys: tuple[Ed25519PublicKey, ...]  # besides the signing key's own public key
    hub_secret: str
    console_secret: str
    sources: Mapping[str, str]  # secret -> where it came from (never the value)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (base64url SHA-256): the ``kid`` of its tokens."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}, separators=(",", ":"),
                     sort_keys=True)
    return _b64(hashlib.sha256(jwk.encode()).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_signing_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _from_state(state_dir: Path, secret: Secret) -> bytes | None:
    """One machine: read the state directory's copy, made on first start (races: first wins)."""
    path = state_dir / secret.file
    if not path.exists():
        if not secret.required:
            return None
        fresh = new_signing_key_pem() if secret is SIGNING_KEY else (
            secrets.token_urlsafe(32).encode())
        try:
            _write_private(path, fresh)
        except FileExistsError:
            pass  # another process won the race; use its secret
    path.chmod(0o600)
    return path.read_bytes()


def _lookup(secret: Secret, *, state_dir: Path, secrets_dir: Path | None,
            environ: Mapping[str, str]) -> tuple[bytes | None, str]:
    value = environ.get(secret.env, "").strip()
    if value:
        return value.encode(), secret.env
    if secrets_dir is not None:
        path = secrets_dir / secret.file
        if path.is_file():
            return path.read_bytes(), str(path)
        if secret.required:
            raise SecretMisconfigured(_l(
                "%(dir)s has no %(file)s and %(env)s is not set: every replica needs the "
                "same one", dir=str(secrets_dir), file=secret.file, env=secret.env))
        return None, "none"
    return _from_state(state_dir, secret), str(state_dir / secret.file)


def _key(pem: bytes, origin: str, *, private: bool) -> Ed25519PrivateKey | Ed25519PublicKey:
    try:
        key = (serialization.load_pem_private_key(pem, password=None) if private
               else serialization.load_pem_public_key(pem))
    except (ValueError, TypeError) as exc:
        raise SecretMisconfigured(_l("%(origin)s holds a key that cannot be read",
                                     origin=origin)) from exc
    if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        raise SecretMisconfigured(_l("%(origin)s holds a key that is not Ed25519",
                                     origin=origin))
    return key


def _pem_keys(pem: bytes, origin: str) -> list[Ed25519PublicKey]:
    """Every Ed25519 key of a PEM bundle, as public keys (a private key verifies too)."""
    keys = []
    for block in _PEM_BLOCK.finditer(pem):
        key = _key(block.group(0), origin, private=b"PRIVATE" in block.group(1))
        keys.append(key.public_key() if isinstance(key, Ed25519PrivateKey) else key)
    return keys


def _signing_key(pem: bytes, origin: str) -> Ed25519PrivateKey:
    key = _key(pem.strip(), origin, private=True)
    assert isinstance(key, Ed25519PrivateKey)  # the private loader returns private keys
    return key


def _text(value: bytes | None, origin: str) -> str:
    text = (value or b"").decode().strip()
    if len(text) < 16:
        raise SecretMisconfigured(_l("%(origin)s is shorter than 16 characters", origin=origin))
    return text


def load_secrets(state_dir: Path, secrets_dir: Path | None,
                 environ: Mapping[str, str] | None = None) -> GatewaySecrets:
    """The gateway's secrets from the environment, the shared directory or the state dir."""
    environ = os.environ if environ is None else environ
    found = {s: _lookup(s, state_dir=state_dir, secrets_dir=secrets_dir, environ=environ)
             for s in SECRETS}
    sources = {s.file: origin for s, (_, origin) in found.items()}
    signing_pem, signing_origin = found[SIGNING_KEY]
    verify_pem, verify_origin = found[VERIFY_KEYS]
    log.info("secrets: %s", ", ".join(f"{k} from {v}" for k, v in sources.items()))
    return GatewaySecrets(
        signing_key=_signing_key(signing_pem or b"", signing_origin),
        verify_keys=tuple(_pem_keys(verify_pem, verify_origin)) if verify_pem else (),
        hub_secret=_text(*found[HUB_SECRET]), console_secret=_text(*found[CONSOLE_SECRET]),
        sources=sources)
