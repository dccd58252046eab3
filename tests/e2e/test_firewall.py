"""The egress filter: a uid left in a dead hub's table cannot capture a new sandbox."""

from __future__ import annotations

import secrets

import pytest

from sandbox.hub.firewall import SandboxFirewall

pytestmark = pytest.mark.e2e
UID = 64000 + secrets.randbelow(1000)  # a uid no account here uses


def test_a_stale_table_lets_go_of_a_reused_uid() -> None:
    stale = SandboxFirewall(f"dpsandbox_stale{secrets.token_hex(3)}")
    live = SandboxFirewall(f"dpsandbox_live{secrets.token_hex(3)}")
    try:
        stale.install([("127.0.0.1", 1)])
        stale.allow_uid(UID)  # a hub that died with this uid in its set
        other = UID + 1
        stale.allow_uid(other)
        live.install([("127.0.0.1", 2)])
        live.allow_uid(UID)  # the uid now belongs to a sandbox of a live hub
        assert live.uids() == {UID}
        assert stale.uids() == {other}  # only the reused uid was taken off
        live.allow_uid(other)
        assert stale.table not in live._tables()  # emptied, so the stale table is gone
    finally:
        for firewall in (live, stale):
            for uid in firewall.uids():
                firewall.forget_uid(uid)
