"""A damaged audit chain is shown to the auditor at once, naming the damaged entry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from gateway.adapters import tables as t
from tests.browser.conftest import Console

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
expect = pytest.importorskip("playwright.sync_api").expect


def test_a_damaged_chain_is_shown_prominently_with_the_entry(console: Console,
                                                            sign_in: Any) -> None:
    auditor = sign_in("audrey")
    expect(auditor.page.get_by_role("heading", name="Chain verified: intact")).to_be_visible()
    with console.services.store.write() as conn:  # someone edits the log behind our back
        conn.execute(update(t.audit).where(t.audit.c.seq == 4).values(outcome="denied"))
    auditor.goto("/console/audit")
    alert = auditor.page.get_by_role("alert")
    expect(alert).to_contain_text("Chain verification FAILED")
    expect(alert).to_contain_text("entry 4")
    auditor.shot("auditor-chain-damaged")
    auditor.click(alert.get_by_role("link", name="entry 4"))
    expect(auditor.page.get_by_role("heading", name=re.compile("Audit entry 4"))).to_be_visible()
