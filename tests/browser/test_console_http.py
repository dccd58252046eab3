"""The console over plain HTTP (no browser): redirects, cookies, headers, refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from tests.conftest import ADMIN, PASSWORD, GatewayEnv


@pytest.fixture(scope="module")
def gateway_env(exam_env: GatewayEnv) -> GatewayEnv:
    """The accounts and one small dataset are all these tests need."""
    return exam_env


def login_token(client: TestClient) -> str:
    page = client.get("/console/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def sign_in(client: TestClient, username: str, next_page: str = "/console") -> Any:
    return client.post("/console/login", follow_redirects=False, data={
        "username": username, "password": PASSWORD, "csrf_token": login_token(client),
        "next": next_page})


def fresh(env: GatewayEnv, base_url: str = "http://testserver") -> TestClient:
    return TestClient(env.client.app, base_url=base_url)


def test_pages_without_a_session_send_the_browser_to_sign_in(gateway_env: GatewayEnv) -> None:
    response = fresh(gateway_env).get("/console/admin/users?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/console/login?next=%2Fconsole%2Fadmin%2Fusers%3Fx%3D1&reason=required")


def test_sign_in_never_redirects_off_site(gateway_env: GatewayEnv) -> None:
    for target in ("//evil.example/console", "https://evil.example/", "/v1/audit",
                   "/console\\@evil.example"):
        response = sign_in(fresh(gateway_env), "audrey", target)
        assert response.status_code == 303
        assert response.headers["location"] == "/console", target


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(
        gateway_env: GatewayEnv) -> None:
    plain = sign_in(fresh(gateway_env), "audrey").headers["set-cookie"].lower()
    assert "httponly" in plain and "samesite=lax" in plain and "secure" not in plain
    tls = sign_in(fresh(gateway_env, "https://testserver"), "audrey")
    assert "secure" in tls.headers["set-cookie"].lower()


def test_sign_in_needs_its_own_csrf_cookie(gateway_env: GatewayEnv) -> None:
    client = fresh(gateway_env)
    token = login_token(client)
    client.cookies.clear()
    response = client.post("/console/login", data={
        "username": "audrey", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 403 and "CSRF" in response.text


def test_pages_carry_security_headers_and_errors_are_pages(gateway_env: GatewayEnv) -> None:
    client = fresh(gateway_env)
    page = client.get("/console/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    missing = client.get("/console/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert sign_in(client, "root_admin").status_code == 303
    csrf = re.search(r'name="csrf_token" value="([^"]+)"',
                     client.get("/console/admin/users").text)
    assert csrf
    applied = gateway_env.services.access.apply(  # an org grant waits even on open data
        Principal("erin", "enterprise", "acme"), dataset="exam", epsilon=1.0, days=10,
        purpose="exam results by school type, for a study", org_grant=True)
    bad = client.post(f"/console/applications/{applied['id']}/approve",
                      data={"csrf_token": csrf.group(1), "epsilon": "lots", "confirm": "yes"})
    assert bad.status_code == 422 and "Enter a number, such as 0.5." in bad.text
    assert 'value="lots"' in bad.text  # what was typed is kept, beside its message
    assert gateway_env.services.access.get(ADMIN, applied["id"])["status"] == "pending"
    unknown = client.post("/console/applications/nope/reject",
                          data={"csrf_token": csrf.group(1), "note": "no"})
    assert unknown.status_code == 404 and "Not found" in unknown.text


def test_a_sandbox_token_cannot_open_the_console(gateway_env: GatewayEnv) -> None:
    token = gateway_env.services.users.sandbox_token("rita", hub_secret_ok=True)["access_token"]
    client = fresh(gateway_env)
    client.cookies.set("dps_console", token, path="/console")
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303 and "reason=ended" in response.headers["location"]


def test_a_parameter_the_framework_refuses_is_a_page_in_the_readers_language(
        gateway_env: GatewayEnv) -> None:
    client = fresh(gateway_env)
    assert sign_in(client, "root_admin").status_code == 303
    english = client.get("/console/admin/users?page=0")
    chinese = client.get("/console/admin/users?page=0", headers={"Accept-Language": "zh-CN"})
    assert english.status_code == chinese.status_code == 422
    assert "Page: should be at least 1" in english.text  # the page capitalizes
    assert "Page：应不小于 1" in chinese.text


def test_an_account_page_reads_one_account(gateway_env: GatewayEnv) -> None:
    client = fresh(gateway_env)
    assert sign_in(client, "root_admin").status_code == 303
    found = client.get("/console/admin/users/rita")
    assert found.status_code == 200 and "Account rita" in found.text
    missing = client.get("/console/admin/users/nobody")
    assert missing.status_code == 404 and "No user nobody" in missing.text  # capitalized by the page
    entries, _total = gateway_env.services.audit.page(
        AuditFilter(action="user.show", outcome="denied"), page=1, size=5)
    assert entries and entries[0]["detail"]["username"] == "nobody"


def test_only_readers_of_the_log_verify_the_entire_chain_and_only_with_the_csrf_token(
        gateway_env: GatewayEnv) -> None:
    def token_of(client: TestClient) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console").text)
        assert found
        return found.group(1)

    auditor, researcher = fresh(gateway_env), fresh(gateway_env)
    sign_in(auditor, "audrey")
    sign_in(researcher, "rita")
    assert auditor.post("/console/audit/verify", data={}).status_code == 403  # no CSRF token
    refused = researcher.post("/console/audit/verify", data={"csrf_token": token_of(researcher)},
                              follow_redirects=False)
    assert refused.status_code == 403
    [denied] = gateway_env.services.audit.page(
        AuditFilter(actor="rita", action="audit.verify", outcome="denied"), page=1, size=5)[0]
    assert denied["role"] == "researcher"
    done = auditor.post("/console/audit/verify", data={"csrf_token": token_of(auditor)},
                        follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/audit?done=chain-verified"
    shown = auditor.get(done.headers["location"]).text
    assert "The entire chain was verified from its first entry." in shown
    assert "The entire chain was last verified from its first entry on" in shown
