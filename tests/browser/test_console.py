"""The web console in a real browser: administrators, auditors, analysts, CSRF, no records."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select, update

from gateway.adapters.db import tables as t
from gateway.services.audit import AuditFilter, verify_export
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from gateway.services.specs import spec_from_json
from tests.browser.conftest import SCREENSHOTS, Console, squash
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
from playwright.sync_api import expect  # noqa: E402

RITA = Principal("rita", "researcher")
RON = Principal("ron", "researcher")
ERIN = Principal("erin", "enterprise", "acme")
ADMIN2 = Principal("admin2", "admin")


def approved(console: Console, analyst: Principal, dataset: str, *, epsilon: float, days: int,
             purpose: str, note: str) -> None:
    """The analyst's application for ``dataset``, approved by admin2 (services, not pages)."""
    applied = console.services.access.apply(analyst, dataset=dataset, epsilon=epsilon, days=days,
                                            purpose=purpose)
    console.services.access.approve(ADMIN2, applied["id"], note=note)


def run_query(console: Console, actor: Principal, dataset: str, epsilon: float,
              **spec: Any) -> dict[str, Any]:
    body = {"dataset": dataset, "select": [{"agg": "count"}], **spec}
    return console.services.queries.run(actor, QueryRequest(spec=spec_from_json(body),
                                                            epsilon=epsilon))


def test_admin_approves_an_application_and_the_analyst_sees_the_grant(
        console: Console, sign_in: Any) -> None:
    applied = console.services.access.apply(RITA, dataset="flights", epsilon=2.0, days=30,
                                            purpose="Departure delays by airport, for a study")
    admin = sign_in("root_admin")
    expect(admin.page.get_by_role("heading", name="Overview")).to_be_visible()
    admin.shot("admin-overview")
    admin.click(admin.page.get_by_role("link", name="Applications", exact=True))
    admin.shot("admin-applications")
    admin.click(admin.page.get_by_role("link", name=re.compile("Decide application by rita")))
    expect(admin.page.get_by_role("heading", name="Context for the decision")).to_be_visible()
    admin.page.get_by_label("Epsilon to grant").fill("1.5")
    admin.page.get_by_label("Days the grant lasts").fill("20")
    admin.page.get_by_label("Note to the applicant").fill("1.5 is enough for three airports")
    admin.page.get_by_label(re.compile("I have checked the purpose")).check()
    admin.shot("admin-application-decide")
    admin.click(admin.page.get_by_role("button", name="Approve and create the grant"))
    expect(admin.page.get_by_role("status")).to_contain_text("approved")
    expect(admin.page.locator("dl.facts").first).to_contain_text("approved by root_admin")

    grant = next(g for g in console.services.ledger.list(RITA) if g["dataset"] == "flights")
    assert grant["epsilon_total"] == 1.5 and grant["request_id"] == applied["id"]
    run_query(console, RITA, "flights", 0.25, group_by=["origin"])

    analyst = sign_in("rita")
    expect(analyst.page.get_by_role("heading", name="My work")).to_be_visible()
    row = analyst.page.locator("section", has=analyst.page.get_by_role(
        "heading", name="My grants")).get_by_role("row", name=re.compile("flights"))
    expect(row).to_contain_text("1.25")  # remaining epsilon
    expect(row.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"epsilon 0\.25 spent of 1\.5"))
    expect(analyst.page.get_by_role("link", name="Open my sandbox").first).to_have_attribute(
        "href", console.services.settings.hub_url)
    analyst.shot("analyst-my-work")


def test_admin_reviews_a_restricted_query_and_manages_grants_users_datasets(
        console: Console, sign_in: Any) -> None:
    approved(console, RON, "credit", epsilon=2.0, days=30,
             purpose="Default rates by home ownership", note="fine")
    held = run_query(console, RON, "credit", 0.5, group_by=["home"])
    assert held["status"] == "pending_review"

    admin = sign_in("root_admin")
    admin.goto("/console/admin/reviews")
    review = admin.page.get_by_role("article").filter(has_text=held["id"][:8])
    expect(review).to_contain_text('"group_by"')
    expect(review).to_contain_text("epsilon 0.5")
    expect(review.locator("dl.inline")).to_contain_text("±")  # expected accuracy
    admin.shot("admin-reviews")
    review.get_by_label(re.compile("I confirm: compute this query")).check()
    admin.click(review.get_by_role("button", name=re.compile("Release")))
    expect(admin.page.get_by_role("status")).to_contain_text("released")
    assert console.services.queries.get(RON, held["id"])["status"] == "released"

    admin.goto("/console/admin/grants")
    admin.page.get_by_label("Holder").select_option("user:eve")
    admin.page.get_by_label("Dataset", exact=True).select_option("exam")
    admin.page.get_by_role("spinbutton", name="Epsilon").fill("0.5")
    admin.click(admin.page.get_by_role("button", name="Give the grant"))
    expect(admin.page.get_by_role("status")).to_contain_text("grant was created")
    expect(admin.page.get_by_role("row").filter(has_text="eve")).to_contain_text("exam")
    admin.shot("admin-grants")
    row = admin.page.get_by_role("row").filter(has_text="ron").filter(has_text="credit")
    admin.click(row.get_by_role("link", name=re.compile("Extend or revoke")))
    admin.page.get_by_label("Reason for revoking").fill("study finished")
    admin.page.get_by_label(re.compile("I confirm: revoke this grant")).check()
    admin.click(admin.page.get_by_role("button", name="Revoke this grant"))
    expect(admin.page.get_by_role("status")).to_contain_text("revoked")
    expect(admin.page.locator("dl.facts")).to_contain_text("study finished")

    admin.goto("/console/admin/users")
    admin.page.get_by_label("Username").fill("nadia")
    admin.page.get_by_label("Role", exact=True).select_option("researcher")
    admin.page.get_by_label("Initial password").fill("another-long-password")
    admin.click(admin.page.get_by_role("button", name="Create account"))
    expect(admin.page.get_by_role("row", name=re.compile("nadia"))).to_contain_text("active")
    admin.click(admin.page.get_by_role("link", name="Manage nadia"))
    admin.page.get_by_label("Reason for disabling").fill("left the project")
    admin.page.get_by_label(re.compile("I confirm: disable this account")).check()
    admin.click(admin.page.get_by_role("button", name="Disable nadia"))
    expect(admin.page.locator("dl.facts")).to_contain_text("disabled")
    admin.page.get_by_label("New role for nadia").select_option("auditor")
    admin.page.get_by_label(re.compile("I confirm: change this account's role")).check()
    admin.click(admin.page.get_by_role("button", name="Set role of nadia"))
    expect(admin.page.get_by_role("status")).to_contain_text("role was changed")
    admin.goto("/console/admin/users")
    expect(admin.page.get_by_role("row", name=re.compile("nadia"))).to_contain_text("auditor")
    expect(admin.page.get_by_role("row", name=re.compile("nadia"))).to_contain_text("disabled")
    admin.shot("admin-users")

    admin.goto("/console/admin/datasets")
    expect(admin.page.get_by_role("row", name=re.compile("credit"))).to_contain_text("restricted")
    admin.shot("admin-datasets")
    admin.click(admin.page.get_by_role("link", name="flights", exact=True))
    expect(admin.page.get_by_role("table")).to_contain_text("dep_delay")
    expect(admin.page.get_by_role("table")).not_to_contain_text("tailnum")  # hidden column
    admin.shot("admin-dataset-policy")


def test_auditor_filters_follows_the_trail_and_exports_a_verifiable_log(
        console: Console, sign_in: Any) -> None:
    approved(console, ERIN, "flights", epsilon=1.0, days=10,
             purpose="Carrier punctuality benchmark", note="ok for the benchmark")
    run_query(console, ERIN, "flights", 0.2, where=[{"column": "month", "op": "=", "value": 7}])
    run_query(console, ERIN, "exam", 0.3, group_by=["sex"])

    auditor = sign_in("audrey")
    expect(auditor.page.get_by_role("heading", name="Chain verified: intact")).to_be_visible()
    auditor.page.get_by_label("Actor").fill("erin")
    auditor.page.get_by_label("Dataset").fill("flights")
    auditor.page.get_by_label("Action").select_option("query.charge")
    auditor.page.get_by_label("Until (UTC)").fill("2000-01-01T00:00")
    auditor.click(auditor.page.get_by_role("button", name="Filter"))
    table = auditor.page.get_by_role("table")
    expect(table.locator("caption")).to_contain_text("0 matching entries")
    auditor.page.get_by_label("Until (UTC)").fill("")
    auditor.page.get_by_label("From (UTC)").fill("2000-01-01T00:00")
    auditor.click(auditor.page.get_by_role("button", name="Filter"))
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("0.2")
    auditor.shot("auditor-log-filtered")
    auditor.click(table.locator("tbody tr").first.get_by_role("link").first)
    expect(auditor.page.get_by_role("heading", name=re.compile("query.charge"))).to_be_visible()
    auditor.shot("auditor-entry")

    auditor.click(auditor.page.get_by_role("link", name=re.compile("^query ")))
    expect(auditor.page.get_by_role("heading", name=re.compile("Query .* on flights"))).to_be_visible()
    auditor.shot("auditor-query")
    auditor.click(auditor.page.get_by_role("link", name=re.compile("^grant ")))
    expect(auditor.page.get_by_role("heading", name=re.compile("Grant on flights"))).to_be_visible()
    auditor.click(auditor.page.get_by_role("link", name=re.compile("^application ")))
    facts = auditor.page.locator("dl.facts").first
    expect(facts).to_contain_text("Carrier punctuality benchmark")
    expect(facts).to_contain_text("approved by admin2")
    auditor.click(auditor.page.get_by_role("link", name="decision in the audit log"))
    expect(auditor.page.get_by_role("table")).to_contain_text("request.approve")

    auditor.goto("/console/audit")
    for fmt in ("csv", "jsonl"):
        with auditor.page.expect_download() as info:
            auditor.page.get_by_role("link", name="CSV" if fmt == "csv" else "JSON Lines").click()
        download = info.value
        assert download.suggested_filename == f"dpsandbox-audit.{fmt}"
        text = open(download.path(), encoding="utf-8").read()
        report = verify_export(text, fmt)
        assert report.ok and report.entries > 10, report

    auditor.goto("/console/audit/charts")
    expect(auditor.page.get_by_role("img", name="Epsilon spent per dataset")).to_be_visible()
    expect(auditor.page.get_by_role("table").first).to_contain_text("exam")
    auditor.shot("auditor-charts")


def test_analyst_applies_in_the_console_but_cannot_open_admin_or_auditor_pages(
        console: Console, sign_in: Any) -> None:
    analyst = sign_in("ron")
    analyst.page.get_by_label("Dataset", exact=True).select_option("flights")
    analyst.page.get_by_label("Purpose").fill("Seasonality of delays at the three airports")
    analyst.page.get_by_label("Days").fill("14")
    analyst.click(analyst.page.get_by_role("button", name="Send the application"))
    expect(analyst.page.get_by_role("status")).to_contain_text("application was sent")
    expect(analyst.page.locator("dl.facts")).to_contain_text("pending")
    mine = console.services.access.list(RON, status="pending")
    assert [(a["dataset"], a["days"], a["epsilon"]) for a in mine] == [("flights", 14, 1.0)]
    for path in ("/console/admin/applications", "/console/admin/reviews",
                 "/console/admin/grants", "/console/admin/users", "/console/admin/datasets",
                 "/console/audit", "/console/audit/entries/1", "/console/audit/charts",
                 "/console/audit/export.csv"):
        response = analyst.goto(path)
        assert response.status == 403, path
        expect(analyst.page.get_by_role("heading", name="Not allowed")).to_be_visible()
    analyst.shot("analyst-forbidden")
    other = console.services.access.list(Principal("root_admin", "admin"))[0]
    if other["applicant"] != "ron":
        assert analyst.goto(f"/console/applications/{other['id']}").status == 404
    admin = sign_in("root_admin")
    assert admin.goto("/console/audit/export.csv").status == 403  # exports are the auditor's
    refused, _ = console.services.audit.page(
        AuditFilter(actor="ron", outcome="denied"), page=1, size=50)
    assert any(e["action"].startswith("console GET /console/admin/") for e in refused)


def test_a_form_without_its_csrf_token_is_refused(console: Console, sign_in: Any) -> None:
    applied = console.services.access.apply(RITA, dataset="credit", epsilon=1.0, days=5,
                                            purpose="Should stay pending in this test")
    admin = sign_in("root_admin")
    admin.goto(f"/console/applications/{applied['id']}")
    form = admin.page.locator(f"form[action='/console/applications/{applied['id']}/reject']")
    form.get_by_role("textbox").fill("no")
    form.locator("input[name=csrf_token]").evaluate("e => e.remove()")
    admin.click(form.get_by_role("button"))
    expect(admin.page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(admin.page.get_by_role("alert")).to_contain_text("CSRF")
    admin.shot("csrf-refused")
    forged = admin.page.request.post(console.url(f"/console/applications/{applied['id']}/reject"),
                                     form={"note": "no", "csrf_token": "0" * 64})
    assert forged.status == 403
    assert console.services.access.get(RITA, applied["id"])["status"] == "pending"

    analyst = sign_in("rita")
    analyst.goto(f"/console/applications/{applied['id']}")
    analyst.click(analyst.page.get_by_role("button", name="Withdraw this application"))
    expect(analyst.page.locator("dl.facts")).to_contain_text("withdrawn")


def test_sign_in_returns_to_the_page_asked_for_with_a_safe_cookie(
        console: Console, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(console.url("/console/audit?outcome=denied"))
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    expect(page.get_by_role("heading", name=re.compile("Sign in"))).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "login.png"))
    page.get_by_label("Username").fill("audrey")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.url("/console/audit?outcome=denied"))
    expect(page.get_by_label("Outcome")).to_have_value("denied")
    cookie = next(c for c in context.cookies() if c["name"] == "dps_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile("/console/login"))
    assert not [c for c in context.cookies() if c["name"] == "dps_console"]
    page.goto(console.url("/console/audit"))
    expect(page).to_have_url(re.compile("/console/login"))
    # A copy of the cookie kept from before signing out opens nothing: the server ended it.
    replay = browser.new_context()
    replay.add_cookies([cookie])
    stolen = replay.new_page()
    stolen.goto(console.url("/console/audit"))
    expect(stolen).to_have_url(re.compile("/console/login"))
    replay.close()
    context.close()


def test_keyboard_reaches_the_skip_link_first(console: Console, sign_in: Any) -> None:
    admin = sign_in("root_admin")
    admin.page.keyboard.press("Tab")
    focused = admin.page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to main content"
    admin.page.keyboard.press("Enter")
    assert admin.page.evaluate("document.activeElement.id") == "main"


def test_no_raw_record_appears_on_any_page(console: Console, sign_in: Any,
                                           demo_files: dict[str, Any]) -> None:
    for user, paths in {
        "root_admin": ["/console", "/console/admin/applications?status=all",
                       "/console/admin/reviews", "/console/admin/grants",
                       "/console/admin/datasets/credit", "/console/admin/datasets/exam"],
        "audrey": ["/console/audit", "/console/audit?page=2", "/console/audit/charts"],
        "erin": ["/console"],
    }.items():
        session = sign_in(user)
        for path in paths:
            session.goto(path)
        hrefs = [a.get_attribute("href") for a in
                 session.page.locator("a[href^='/console/queries/']").all()[:3]]
        for href in hrefs:
            session.goto(href)
    assert len(console.seen) >= 10
    tailnums = set(pl.read_parquet(demo_files["flights"], columns=["tailnum"])
                   .get_column("tailnum").drop_nulls().to_list())
    exam = pl.read_parquet(demo_files["exam"])
    precise = {f"{v:.6f}".rstrip("0") for v in exam.get_column("normexam").to_list()
               if abs(v) > 0.01}
    for where, html in console.seen.items():
        text = squash(html)
        leaked = [t for t in tailnums if t in text]
        assert not leaked, f"{where}: hidden tailnum values {leaked[:3]}"
        assert not [v for v in precise if v in text], f"{where}: raw exam scores"


def test_a_damaged_chain_is_shown_prominently_with_the_entry(console: Console,
                                                            sign_in: Any) -> None:
    auditor = sign_in("audrey")
    expect(auditor.page.get_by_role("heading", name="Chain verified: intact")).to_be_visible()
    entry_4 = t.audit.c.seq == 4
    with console.services.store.read() as conn:
        original = conn.execute(select(t.audit.c.outcome).where(entry_4)).scalar_one()
    try:
        with console.services.store.write() as conn:  # someone edits the log behind our back
            conn.execute(update(t.audit).where(entry_4).values(outcome="denied"))
        auditor.goto("/console/audit")  # a load recomputes the entries added since the last
        status = auditor.page.get_by_role("status").filter(has_text="verified before")
        expect(status).to_be_visible()  # ... and says the older ones were verified before
        auditor.click(auditor.page.get_by_role("button", name="Verify the entire chain"))
        expect(auditor.page.get_by_text("The entire chain was verified from its first entry."
                                        )).to_be_visible()
        alert = auditor.page.get_by_role("alert")
        expect(alert).to_contain_text("Chain verification FAILED")
        expect(alert).to_contain_text("entry 4")
        expect(auditor.page.locator("form.verify-all")).to_contain_text("entry 4 was damaged")
        auditor.shot("auditor-chain-damaged")
        auditor.goto("/console/audit")  # every later load finds it again
        expect(auditor.page.get_by_role("alert")).to_contain_text("entry 4")
        auditor.click(auditor.page.get_by_role("alert").get_by_role("link", name="entry 4"))
        expect(auditor.page.get_by_role("heading", name=re.compile("Audit entry 4"))).to_be_visible()
    finally:
        with console.services.store.write() as conn:
            conn.execute(update(t.audit).where(entry_4).values(outcome=original))
    assert console.services.audit.verify().ok


def test_an_entry_damaged_after_the_last_check_is_shown_on_the_next_load(
        console: Console, sign_in: Any) -> None:
    auditor = sign_in("audrey")
    expect(auditor.page.get_by_role("heading", name="Chain verified: intact")).to_be_visible()
    seq = console.services.audit.record(action="catalog.list", outcome="ok", actor_name="rita")
    newest = t.audit.c.seq == seq
    try:
        with console.services.store.write() as conn:
            conn.execute(update(t.audit).where(newest).values(actor="someone-else"))
        auditor.goto("/console/audit")
        alert = auditor.page.get_by_role("alert")
        expect(alert).to_contain_text("Chain verification FAILED")
        expect(alert).to_contain_text(f"entry {seq}")
    finally:
        with console.services.store.write() as conn:
            conn.execute(update(t.audit).where(newest).values(actor="rita"))
    auditor.goto("/console/audit")
    expect(auditor.page.get_by_role("heading", name="Chain verified: intact")).to_be_visible()
