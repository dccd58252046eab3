"""The console in Simplified Chinese and English, in a real browser (issue 14).

Every console page renders in zh-CN and in English with no string left in the other
language and no error in the browser's console, and reads at phone width (the page never
scrolls sideways; wide tables scroll inside themselves). Irreversible actions: revoking
without a reason is refused by the server, revoking with a confirmation and a reason is
audited under the admin and shown to the analyst; a form error keeps what was typed; the
decision page warns about an existing grant and extends it instead of adding a second.
Screenshots (desktop and phone, both languages) land in tests/browser/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.domain.paging import PAGE_SIZE
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from gateway.services.specs import spec_from_json
from gateway.web.words import ACTIONS
from tests.browser.conftest import PAGE_TIMEOUT_MS, SCREENSHOTS, Console
from tests.conftest import ADMIN, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
from playwright.sync_api import expect  # noqa: E402

RITA = Principal("rita", "researcher")
RON = Principal("ron", "researcher")
ERIN = Principal("erin", "enterprise", "acme")
ADMIN2 = Principal("admin2", "admin")
POLICIES = Path(__file__).resolve().parents[2] / "policies"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
MISSING = "/console/no-such-page"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# Words that are data or names, never interface text: accounts, datasets, orgs, the policies'
# identifiers (columns, categories, domains, sources), units and product names.
NAMES = {"root_admin", "admin2", "audrey", "rita", "ron", "erin", "eve", "acme", "flights",
         "exam", "credit", "epsilon", "delta", "Epsilon", "Delta", "rho", "Rho", "zCDP",
         "system", "cli", "test",
         "dp", "sandbox", "JupyterLab", "UTC", "API", "SQL", "JSON", "CSV", "Lines", "English",
         "nycflights13", "mlmRev", "modeldata", "credit_data", "Exam", "GCSE", "LRT", "HHMM",
         "EWR", "JFK", "LGA"}
# Chinese that the world below types in (data, not interface text).
TYPED_ZH = ["按机场研究起飞延误的季节性变化，供交通规划研究报告使用", "项目提前结束",
            "第二阶段继续研究", "同意试点使用", "研究结束，撤销授权",
            "申请追加预算用于第二阶段的延误研究，按月份和机场分组分析"]


def policy_words() -> set[str]:
    words: set[str] = set()
    for path in POLICIES.glob("**/*.yaml"):  # variants too (exam_zcdp)
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        words |= {policy["name"], policy["domain"], policy.get("source", "")}
        for name, column in policy["columns"].items():
            words.add(name)
            words |= {str(c) for c in column.get("categories") or []}
            words.add(column["type"])
    return {w for text in words for w in re.findall(r"[A-Za-z][A-Za-z0-9_]+", text)}


# Accounts enough for the users list to have a second page (the pager, in both languages).
MORE_ACCOUNTS = [f"analyst{i:02d}" for i in range(PAGE_SIZE + 1)]
ALLOWED = NAMES | policy_words() | set(ACTIONS) | set(MORE_ACCOUNTS)
VISIBLE_TEXT = """() => {
  const skip = new Set(["CODE", "PRE", "TIME", "SCRIPT", "STYLE"]);
  const out = [];
  const walk = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent);
      else if (child.nodeType === Node.ELEMENT_NODE && !skip.has(child.tagName.toUpperCase())) walk(child);
    }
  };
  walk(document.body);
  for (const el of document.querySelectorAll("[aria-label], [placeholder], [title], [alt]")) {
    for (const name of ["aria-label", "placeholder", "title", "alt"]) {
      if (el.getAttribute(name) && el.tagName !== "A") out.push(el.getAttribute(name));
    }
  }
  out.push(document.title);
  return out.join("\\n");
}"""


def english_left(text: str) -> list[str]:
    """English words on a Chinese page that are not names or data."""
    text = re.sub(r"\b[a-z_]+\.[a-z_]+\b", " ", text)  # audit action identifiers
    text = re.sub(r"/[\w/.-]+", " ", text)  # paths (a page that is not there names its URL)
    words = re.findall(r"(?<![0-9A-Za-z_])[A-Za-z][A-Za-z0-9_]+", text)
    return sorted({w for w in words if w not in ALLOWED and not re.fullmatch(r"[0-9a-f]+", w)})


def chinese_left(text: str) -> list[str]:
    """Chinese on an English page other than the language switch and typed-in data."""
    for typed in [*TYPED_ZH, "中文"]:
        text = text.replace(typed, " ")
    return sorted({line.strip() for line in text.splitlines() if CJK.search(line)})


class Reader:
    """One person's tab in one language, counting the browser console's errors."""

    def __init__(self, console: Console, browser: Any, username: str | None, locale: str,
                 viewport: dict[str, int] = DESKTOP) -> None:
        self.console, self.locale = console, locale
        self.context = browser.new_context(locale=locale, viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.errors: list[str] = []
        self.refused: tuple[str, ...] = ()  # forms the test sends wrong on purpose
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        if username:
            self.page.goto(console.url("/console/login"))
            self.page.locator("#username").fill(username)
            self.page.locator("#password").fill(PASSWORD)
            self.page.locator("form.stack button[type=submit]").click()
            self.page.wait_for_load_state()

    def _console(self, message: Any) -> None:
        # The 404 page is answered 404 on purpose, and a form sent wrong 422 (the browser
        # logs both); anything else is a real error.
        url = message.location.get("url", "")
        expected = ("404" in message.text and url.endswith(MISSING)) or (
            "422" in message.text and url.endswith(self.refused))
        if message.type == "error" and not expected:
            self.errors.append(f"{message.text} ({url})")

    def open(self, path: str) -> Any:
        response = self.page.goto(self.console.url(path))
        self.page.wait_for_load_state()
        self.console.seen[f"{self.locale} {self.page.url}"] = self.page.content()
        return response

    def text(self) -> str:
        return str(self.page.evaluate(VISIBLE_TEXT))

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def reader(console: Console, browser: Any) -> Iterator[Any]:
    opened: list[Reader] = []

    def open_as(username: str | None, locale: str, **kw: Any) -> Reader:
        opened.append(Reader(console, browser, username, locale, **kw))
        return opened[-1]

    yield open_as
    for one in opened:
        one.close()


def run_query(console: Console, actor: Principal, dataset: str, epsilon: float,
              **spec: Any) -> dict[str, Any]:
    body = {"dataset": dataset, "select": [{"agg": "count"}], **spec}
    return console.services.queries.run(actor, QueryRequest(spec=spec_from_json(body),
                                                            epsilon=epsilon))


@pytest.fixture(scope="module")
def world(console: Console, demo_files: dict[str, Path]) -> dict[str, Any]:
    """Something on every page: decisions, grants (one revoked), queries (one held), a list
    longer than a page, a zCDP dataset charged in rho (its own budget charts)."""
    svc = console.services
    for name in MORE_ACCOUNTS:
        svc.users.create(ADMIN, username=name, role="researcher", password=PASSWORD)
    svc.catalog.register(ADMIN, name="exam_zcdp", data=demo_files["exam"],
                         policy_file=POLICIES / "variants" / "exam_zcdp.yaml")
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam_zcdp", epsilon=1.0, delta=None,
                    days=10)
    run_query(console, RITA, "exam_zcdp", 0.2)
    first = svc.access.apply(RITA, dataset="flights", epsilon=2.0, days=30, purpose=TYPED_ZH[0])
    svc.access.approve(ADMIN2, first["id"], note=TYPED_ZH[3])
    run_query(console, RITA, "flights", 0.2, group_by=["origin"])
    exam = run_query(console, RITA, "exam", 0.3, group_by=["sex"])
    svc.ledger.revoke(ADMIN, exam["budget"]["grant_id"], TYPED_ZH[1])
    credit = svc.access.apply(RON, dataset="credit", epsilon=2.0, days=30, purpose=TYPED_ZH[0])
    svc.access.approve(ADMIN2, credit["id"], note=TYPED_ZH[3])
    held = run_query(console, RON, "credit", 0.5, group_by=["home"])
    ron_flights = svc.ledger.give(ADMIN, user="ron", org=None, dataset="flights", epsilon=1.0,
                                  delta=None, days=10)
    again = svc.access.apply(RON, dataset="flights", epsilon=1.0, days=20, purpose=TYPED_ZH[5])
    svc.ledger.give(ADMIN, user=None, org="acme", dataset="exam", epsilon=1.0, delta=None,
                    days=10)
    revocable = svc.ledger.give(ADMIN, user="rita", org=None, dataset="credit", epsilon=0.5,
                                delta=None, days=10)
    return {"query": exam["id"], "held": held["id"], "grant": first["id"],
            "rita_grant": exam["budget"]["grant_id"], "ron_grant": ron_flights["id"],
            "duplicate_app": again["id"], "revocable": revocable["id"],
            "app": first["id"]}


def pages(world: dict[str, Any]) -> dict[str, list[str]]:
    admin = ["/console", "/console/admin/applications", "/console/admin/applications?status=all",
             f"/console/applications/{world['duplicate_app']}", "/console/admin/reviews",
             "/console/admin/grants", f"/console/grants/{world['ron_grant']}",
             f"/console/grants/{world['rita_grant']}", "/console/admin/users",
             "/console/admin/users/ron", "/console/admin/datasets",
             "/console/admin/datasets/flights", "/console/queries",
             f"/console/queries/{world['query']}", "/console/audit",
             "/console/audit?action=grant.revoke", "/console/audit/entries/3",
             "/console/audit/charts", "/console/audit/charts?range=1d", "/console/catalog",
             # search and pages: a second page, a search with a pager, one finding nothing
             "/console/admin/users?page=2", "/console/admin/users?q=analyst",
             "/console/admin/grants?q=no-such-thing", "/console/queries?status=error",
             MISSING]
    analyst = ["/console", "/console/catalog", "/console/queries",
               f"/console/grants/{world['rita_grant']}", f"/console/applications/{world['app']}",
               f"/console/queries/{world['query']}"]
    return {"root_admin": admin, "audrey": ["/console/audit", "/console/audit/charts"],
            "rita": analyst}


def slug(path: str) -> str:
    if path.startswith("/console/applications/"):
        return "decision"
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")[:48] or "home"


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_every_console_page_in_both_languages(console: Console, reader: Any,
                                              world: dict[str, Any], locale: str) -> None:
    problems: dict[str, list[str]] = {}
    anonymous = reader(None, locale)
    anonymous.open("/console/login")
    by_user = {None: ["/console/login"], **pages(world)}
    for username, paths in by_user.items():
        tab = anonymous if username is None else reader(username, locale)
        for path in paths:
            tab.open(path)
            expect(tab.page.locator("html")).to_have_attribute(
                "lang", "zh-CN" if locale == "zh-CN" else "en")
            text = tab.text()
            left = english_left(text) if locale == "zh-CN" else chinese_left(text)
            if left:
                problems[f"{username} {path}"] = left
            tab.shot(f"{locale[:2]}-{username}-{slug(path)}")  # every page, kept
            if "q=analyst" in path:  # the pager is on the walk, in this language
                expect(tab.page.locator("nav.pager")).to_contain_text("2")
            if path == "/console/audit/charts":  # zCDP charges drawn in rho
                expect(tab.page.locator("svg[role=img]")).to_have_count(4)
        assert tab.errors == [], f"browser console errors as {username}: {tab.errors}"
    assert not problems, f"text left in the other language on {locale} pages: {problems}"


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_pages_read_at_phone_width(console: Console, reader: Any, world: dict[str, Any],
                                   locale: str) -> None:
    for username, paths in pages(world).items():
        tab = reader(username, locale, viewport=PHONE)
        for path in paths[:8]:
            tab.open(path)
            overflow = tab.page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at phone width"
        tab.open(paths[0])
        tab.shot(f"phone-{locale[:2]}-{username}-{slug(paths[0])}")
        if username == "root_admin":
            tab.open("/console/admin/grants")
            tab.shot(f"phone-{locale[:2]}-admin-grants")
        assert tab.errors == []


def test_the_language_switch_is_remembered(console: Console, reader: Any) -> None:
    tab = reader("rita", "en-US")
    tab.open("/console")
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("My work")
    tab.page.get_by_role("navigation", name="Language").get_by_role("link", name="中文").click()
    tab.page.wait_for_load_state()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("我的工作")
    tab.open("/console/catalog")  # the browser still asks for English: the choice wins
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("数据目录")
    expect(tab.page.get_by_role("heading", name=re.compile("2013 年纽约离港航班"))).to_be_visible()
    cookie = next(c for c in tab.context.cookies() if c["name"] == "dps_lang")
    assert cookie["value"] == "zh_CN" and cookie["expires"] > 0
    tab.page.get_by_role("navigation", name="语言").get_by_role("link", name="English").click()
    tab.page.wait_for_load_state()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Catalog")


def test_revoke_needs_a_reason_and_is_audited_under_the_admin(
        console: Console, reader: Any, world: dict[str, Any]) -> None:
    grant_id = world["revocable"]
    admin = reader("root_admin", "zh-CN")
    admin.refused = (f"/console/grants/{grant_id}/revoke",)
    admin.open(f"/console/grants/{grant_id}")
    form = admin.page.locator(f"form[action='/console/grants/{grant_id}/revoke']")
    form.get_by_label(re.compile("我确认：立即撤销此授权")).check()
    form.get_by_role("button", name="撤销此授权").click()  # no reason
    admin.page.wait_for_load_state()
    expect(admin.page.locator("#revoke-note-error")).to_have_text(re.compile("请说明撤销此授权的理由"))
    expect(admin.page.locator("#rv-note")).to_have_attribute("aria-invalid", "true")
    admin.shot("zh-revoke-refused")
    assert console.services.ledger.get(ADMIN, grant_id)["status"] == "active"

    admin.page.locator("#rv-note").fill(TYPED_ZH[4])
    form = admin.page.locator(f"form[action='/console/grants/{grant_id}/revoke']")
    form.get_by_label(re.compile("我确认：立即撤销此授权")).check()
    form.get_by_role("button", name="撤销此授权").click()
    admin.page.wait_for_load_state()
    expect(admin.page.get_by_role("status")).to_contain_text("授权已撤销")
    assert console.services.ledger.get(ADMIN, grant_id)["status"] == "revoked"
    entries, _total = console.services.audit.page(
        AuditFilter(action="grant.revoke", grant_id=grant_id), page=1, size=10)
    done = [e for e in entries if e["outcome"] == "ok"]
    assert [(e["actor"], e["role"], e["detail"]["note"]) for e in done] == [
        ("root_admin", "admin", TYPED_ZH[4])]

    analyst = reader("rita", "zh-CN")
    analyst.open("/console")
    row = analyst.page.locator("section", has=analyst.page.get_by_role(
        "heading", name="我的授权")).get_by_role("row").filter(has_text="credit")
    expect(row).to_contain_text("已撤销")
    expect(row).to_contain_text(TYPED_ZH[4])
    analyst.shot("zh-analyst-sees-revoke-reason")
    assert admin.errors == analyst.errors == []


def test_a_form_error_keeps_what_was_typed(console: Console, reader: Any,
                                          world: dict[str, Any]) -> None:
    analyst = reader("ron", "zh-CN")
    analyst.refused = ("/console/applications",)
    analyst.open("/console")
    analyst.page.locator("#ap-dataset").select_option("exam")
    analyst.page.locator("#ap-purpose").fill("太短")
    analyst.page.locator("#ap-epsilon").fill("9")
    analyst.page.locator("#ap-days").fill("12")
    analyst.page.get_by_role("button", name="提交申请").click()
    analyst.page.wait_for_load_state()
    expect(analyst.page.locator("#apply-purpose-error")).to_contain_text("请至少输入 20 个字符")
    expect(analyst.page.locator("#apply-epsilon-error")).to_contain_text("此处最多为 4")
    expect(analyst.page.locator("#ap-purpose")).to_have_value("太短")
    expect(analyst.page.locator("#ap-epsilon")).to_have_value("9")
    expect(analyst.page.locator("#ap-days")).to_have_value("12")
    expect(analyst.page.locator("#ap-dataset")).to_have_value("exam")
    analyst.page.locator("#ap-purpose").scroll_into_view_if_needed()
    analyst.shot("zh-form-error-kept")
    assert [a for a in console.services.access.list(RON) if a["dataset"] == "exam"] == []
    assert analyst.errors == []


def test_the_decision_page_warns_of_an_active_grant_and_extends_it(
        console: Console, reader: Any, world: dict[str, Any]) -> None:
    before = [g for g in console.services.ledger.list(RON) if g["dataset"] == "flights"]
    admin = reader("root_admin", "en-US")
    admin.open(f"/console/applications/{world['duplicate_app']}")
    warning = admin.page.locator("#duplicate-warning")
    expect(warning).to_contain_text("already has an active grant on this dataset")
    expect(warning).to_contain_text(world["ron_grant"][:8])
    expect(admin.page.get_by_label(re.compile("Extend grant"))).to_be_checked()
    admin.page.get_by_label(re.compile("I have checked the purpose")).check()
    admin.page.get_by_role("button", name="Approve", exact=True).click()
    admin.page.wait_for_load_state()
    expect(admin.page.get_by_role("status")).to_contain_text("extending the existing grant")
    after = [g for g in console.services.ledger.list(RON) if g["dataset"] == "flights"]
    assert len(after) == len(before)
    grown = next(g for g in after if g["id"] == world["ron_grant"])
    assert grown["epsilon_total"] == 2.0
    assert admin.errors == []
