"""The console's lists with more rows than a page: search and pages come from the store,
and the pages read as before (counts, pager links that keep the search and the filters)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.domain.budget import Budget
from gateway.domain.paging import PAGE_SIZE
from gateway.domain.records import QueryRecord
from gateway.services.common import Principal, iso, now
from tests.browser.test_console_http import sign_in
from tests.conftest import ADMIN, PASSWORD, make_services

EXTRA = PAGE_SIZE + 5
SPEC = '{"dataset": "exam", "select": [{"agg": "count"}]}'


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory,
          demo_files: dict[str, Path]) -> Iterator[TestClient]:
    services = make_services(tmp_path_factory.mktemp("home"), demo_files, datasets=("exam", "flights"))
    base = now() - timedelta(hours=1)
    for i in range(EXTRA):
        name = f"analyst{i:02d}"
        services.users.create(ADMIN, username=name, role="researcher", password=PASSWORD)
        services.ledger.give(ADMIN, user=name, org=None, dataset="exam", epsilon=0.5,
                             delta=None, days=10)
        # flights is conditional: its applications wait (exam's are granted at once)
        services.access.apply(Principal(name, "researcher"), dataset="flights", epsilon=0.5,
                              days=10, purpose=f"delay study number {i:02d} by airport")
    with services.store.writing() as tx:
        for i in range(EXTRA):
            tx.queries.add(QueryRecord(
                id=f"query{i:02d}", username=f"analyst{i:02d}", dataset="exam",
                dataset_version="v1", grant_id=None, query_key=f"k{i}", spec_json=SPEC,
                sql_text=f"SELECT COUNT(*) FROM exam -- {i:02d}", status="error",
                cost=Budget.of(0.1), created_at=iso(base + timedelta(seconds=i))))
    with TestClient(create_app(services=services)) as client:
        assert sign_in(client, "root_admin").status_code == 303
        yield client


def caption(html: str) -> str:
    found = re.search(r"<caption>\s*(\d+)", html)
    assert found, html
    return found.group(1)


def rows(html: str) -> int:
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    return body.group(1).count("<tr") if body else 0


@pytest.mark.parametrize(("path", "total", "needle", "found"), [
    # the demo's accounts besides the extra analysts
    ("/console/admin/users", None, "ANALYST0", 10),
    ("/console/admin/grants", EXTRA, "analyst1", 10),
    ("/console/admin/applications?status=pending", EXTRA, "NUMBER 2", 10),
    ("/console/queries", EXTRA, "-- 0", 10),
])
def test_a_long_list_pages_and_searches(admin: TestClient, path: str, total: int | None,
                                        needle: str, found: int) -> None:
    first = admin.get(path)
    assert first.status_code == 200
    shown = int(caption(first.text))
    assert shown >= EXTRA and (total is None or shown == total)
    assert rows(first.text) == PAGE_SIZE
    assert "Page 1 of 2" in first.text and 'rel="next"' in first.text
    sep = "&" if "?" in path else "?"
    second = admin.get(f"{path}{sep}page=2")
    assert rows(second.text) == shown - PAGE_SIZE and "Page 2 of 2" in second.text
    assert admin.get(f"{path}{sep}page=9").text.count("<tr") == second.text.count("<tr")
    searched = admin.get(f"{path}{sep}q={needle}")
    assert int(caption(searched.text)) == found and rows(searched.text) == found
    assert f'value="{needle}"' in searched.text  # the search box keeps what was typed
    assert "Page 1 of" not in searched.text  # one page: no pager


def test_the_pager_keeps_the_search_and_the_filter(admin: TestClient) -> None:
    page = admin.get("/console/admin/applications?status=pending&q=study")
    assert "Page 1 of 2" in page.text
    link = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert link and link.group(1).replace("&amp;", "&") == (
        "/console/admin/applications?status=pending&q=study&page=2")
    # the status tabs keep the search too, the shown one marked
    assert 'href="/console/admin/applications?status=all&amp;q=study"' in page.text
    assert re.search(r'status=pending&amp;q=study" aria-current="true"', page.text)
