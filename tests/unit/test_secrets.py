"""Secrets from one shared place (environment, DPSANDBOX_SECRETS_DIR, state dir) and key
rotation: a retired key verifies until it is dropped (gateway/adapters/secrets.py, auth.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from gateway.adapters.auth import TokenService
from gateway.adapters.secrets import (
    SecretMisconfigured,
    key_id,
    load_secrets,
    new_signing_key_pem,
)
from gateway.domain.errors import Unauthenticated

HUB, CONSOLE = "hub-secret-0123456789abcdef", "console-secret-0123456789abcdef"


def public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def secrets_dir(path: Path, signing: bytes, verify: bytes | None = None) -> Path:
    path.mkdir(exist_ok=True)
    (path / "signing_key.pem").write_bytes(signing)
    (path / "hub_secret").write_text(HUB + "\n")
    (path / "console_secret").write_text(CONSOLE)
    if verify is not None:
        (path / "verify_keys.pem").write_bytes(verify)
    return path


def tokens(secrets_path: Path, state: Path) -> TokenService:
    found = load_secrets(state, secrets_path, environ={})
    return TokenService(found.signing_key, verify_keys=found.verify_keys, issuer="dp-sandbox",
                        audience="dp-sandbox-gateway")


def test_the_state_dir_is_the_fallback_made_once_and_private(tmp_path: Path) -> None:
    first = load_secrets(tmp_path, None, environ={})
    again = load_secrets(tmp_path, None, environ={})
    assert first.hub_secret == again.hub_secret and first.console_secret == again.console_secret
    assert key_id(first.signing_key.public_key()) == key_id(again.signing_key.public_key())
    for name in ("signing_key.pem", "hub_secret", "console_secret"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert not (tmp_path / "verify_keys.pem").exists()
    assert first.sources["hub_secret"] == str(tmp_path / "hub_secret")


def test_the_secrets_dir_is_used_and_nothing_is_made_in_the_state_dir(tmp_path: Path) -> None:
    pem = new_signing_key_pem()
    shared = secrets_dir(tmp_path / "shared", pem)
    state = tmp_path / "state"
    state.mkdir()
    found = load_secrets(state, shared, environ={})
    assert (found.hub_secret, found.console_secret) == (HUB, CONSOLE)
    assert key_id(found.signing_key.public_key()) == key_id(
        serialization.load_pem_private_key(pem, password=None).public_key())  # type: ignore[arg-type]
    assert found.verify_keys == ()
    assert list(state.iterdir()) == []


def test_environment_variables_win_over_the_secrets_dir(tmp_path: Path) -> None:
    shared = secrets_dir(tmp_path / "shared", new_signing_key_pem())
    env_key = new_signing_key_pem()
    env = {"DPSANDBOX_SIGNING_KEY": env_key.decode(), "DPSANDBOX_HUB_SECRET": "h" * 20,
           "DPSANDBOX_CONSOLE_SECRET": "c" * 20}
    found = load_secrets(tmp_path, shared, environ=env)
    assert (found.hub_secret, found.console_secret) == ("h" * 20, "c" * 20)
    assert found.sources["signing_key.pem"] == "DPSANDBOX_SIGNING_KEY"
    env_public = serialization.load_pem_private_key(env_key, password=None).public_key()
    assert key_id(found.signing_key.public_key()) == key_id(env_public)  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", ["signing_key.pem", "hub_secret", "console_secret"])
def test_a_secrets_dir_missing_a_secret_stops_the_gateway(tmp_path: Path, missing: str) -> None:
    shared = secrets_dir(tmp_path / "shared", new_signing_key_pem())
    (shared / missing).unlink()
    with pytest.raises(SecretMisconfigured, match=missing):
        load_secrets(tmp_path, shared, environ={})
    assert not (tmp_path / missing).exists()  # no replica makes one of its own


def test_keys_that_are_not_ed25519_or_short_secrets_are_refused(tmp_path: Path) -> None:
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(SecretMisconfigured, match="not Ed25519"):
        load_secrets(tmp_path, secrets_dir(tmp_path / "a", ec_pem), environ={})
    with pytest.raises(SecretMisconfigured, match="not Ed25519"):
        load_secrets(tmp_path, secrets_dir(tmp_path / "b", new_signing_key_pem(), ec_pem),
                     environ={})
    with pytest.raises(SecretMisconfigured, match="cannot be read"):
        load_secrets(tmp_path, secrets_dir(tmp_path / "c", b"nonsense"), environ={})
    with pytest.raises(SecretMisconfigured, match="shorter than 16"):
        load_secrets(tmp_path, secrets_dir(tmp_path / "d", new_signing_key_pem()),
                     environ={"DPSANDBOX_HUB_SECRET": "short"})


def test_rotation_old_tokens_verify_until_their_key_is_dropped(tmp_path: Path) -> None:
    old, new = new_signing_key_pem(), new_signing_key_pem()
    before = tokens(secrets_dir(tmp_path / "before", old), tmp_path)
    old_token, _ = before.issue(username="rita", role="researcher", ttl=600)
    assert jwt.get_unverified_header(old_token)["kid"] == before.key_id

    # step 1: every replica verifies the new key too, still signing with the old one
    step1 = tokens(secrets_dir(tmp_path / "step1", old, public_pem(new)), tmp_path)
    # step 2: the new key signs; the old one (private or public PEM) only verifies
    step2 = tokens(secrets_dir(tmp_path / "step2", new, public_pem(old)), tmp_path)
    new_token, _ = step2.issue(username="rita", role="researcher", ttl=600)
    assert step1.verify(new_token).username == "rita"  # a replica not yet at step 2
    assert step2.verify(old_token).username == "rita"
    assert step2.verify(new_token).username == "rita"
    assert step2.key_id != before.key_id

    # step 3: the old key is dropped: its tokens are refused, the new ones still verify
    step3 = tokens(secrets_dir(tmp_path / "step3", new), tmp_path)
    with pytest.raises(Unauthenticated, match="no longer accepts"):
        step3.verify(old_token)
    assert step3.verify(new_token).username == "rita"


def test_a_kid_naming_another_key_does_not_make_a_signature_valid(tmp_path: Path) -> None:
    old, new = new_signing_key_pem(), new_signing_key_pem()
    rotated = tokens(secrets_dir(tmp_path / "r", new, public_pem(old)), tmp_path)
    stranger = tokens(secrets_dir(tmp_path / "s", new_signing_key_pem()), tmp_path)
    token, _ = stranger.issue(username="rita", role="admin", ttl=600)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, serialization.load_pem_private_key(
        new_signing_key_pem(), password=None), algorithm="EdDSA",  # type: ignore[arg-type]
        headers={"kid": rotated.key_id})
    with pytest.raises(Unauthenticated):
        rotated.verify(forged)
    with pytest.raises(Unauthenticated, match="no longer accepts"):
        rotated.verify(token)


def test_a_token_without_kid_is_checked_against_the_signing_key(tmp_path: Path) -> None:
    """Tokens issued before key ids verify while their key still signs (an upgrade)."""
    pem = new_signing_key_pem()
    service = tokens(secrets_dir(tmp_path / "k", pem), tmp_path)
    token, _ = service.issue(username="rita", role="researcher", ttl=600)
    claims = jwt.decode(token, options={"verify_signature": False})
    legacy = jwt.encode(claims, serialization.load_pem_private_key(pem, password=None),  # type: ignore[arg-type]
                        algorithm="EdDSA")
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert service.verify(legacy).username == "rita"
    rotated = tokens(secrets_dir(tmp_path / "r", new_signing_key_pem(), public_pem(pem)),
                     tmp_path)
    with pytest.raises(Unauthenticated):
        rotated.verify(legacy)  # without a kid: only the signing key is tried


def test_the_hub_finds_the_hub_secret_in_the_shared_dir(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.hub.settings import HubSettings, read_hub_secret

    monkeypatch.delenv("DPSANDBOX_HUB_SECRET", raising=False)
    monkeypatch.delenv("DPSANDBOX_HUB_SECRET_FILE", raising=False)
    monkeypatch.setenv("DPSANDBOX_HOME", str(tmp_path / "home"))
    assert HubSettings.from_env().hub_secret_file == tmp_path / "home" / "state" / "hub_secret"
    shared = secrets_dir(tmp_path / "shared", new_signing_key_pem())
    monkeypatch.setenv("DPSANDBOX_SECRETS_DIR", str(shared))
    assert read_hub_secret(HubSettings.from_env().hub_secret_file) == HUB
    assert load_secrets(tmp_path, shared, environ={}).hub_secret == HUB  # the gateway's
    monkeypatch.setenv("DPSANDBOX_HUB_SECRET_FILE", str(tmp_path / "elsewhere"))
    assert HubSettings.from_env().hub_secret_file == tmp_path / "elsewhere"
