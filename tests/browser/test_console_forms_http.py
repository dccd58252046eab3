"""Every console form, sent wrong: HTTP 422, nothing changed, the typed input kept and a
message beside the field, in the reader's language (Starlette's test client; the real
browser flows are in test_console.py and test_console_i18n.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.services.common import Principal
from tests.conftest import ADMIN, PASSWORD, GatewayEnv, make_services, serve

pytestmark = [pytest.mark.browser]
ERIN = Principal("erin", "enterprise", "acme")
RON = Principal("ron", "researcher")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    yield from serve(make_services(tmp_path_factory.mktemp("home"), demo_files, datasets=("exam", "credit")))


def signed_in(env: GatewayEnv, username: str, language: str) -> tuple[TestClient, str]:
    client = TestClient(env.client.app, headers={"Accept-Language": language})
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    client.post("/console/login", data={"username": username, "password": PASSWORD,
                                        "csrf_token": token.group(1), "next": "/console"})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console").text)
    assert csrf
    return client, csrf.group(1)


@pytest.fixture(scope="module")
def world(env: GatewayEnv) -> dict[str, Any]:
    svc = env.services
    app = svc.access.apply(ERIN, dataset="exam", epsilon=1.0, days=10, org_grant=True,
                           purpose="exam results by school type, for a study")
    grant = svc.ledger.give(ADMIN, user="ron", org=None, dataset="credit", epsilon=1.0,
                            delta=None, days=10)
    return {"app": app["id"], "grant": grant["id"]}


CASES: list[tuple[str, str, str, dict[str, str], str, str]] = [
    # who, path, field in error, body, what the message says (en), (zh)
    ("ron", "/console/applications", "purpose",
     {"dataset": "credit", "purpose": "too short", "days": "999"},
     "At least 20 characters", "请至少输入 20 个字符"),
    ("root_admin", "/console/applications/{app}/approve", "epsilon",
     {"epsilon": "lots", "days": "5", "note": "typed note", "confirm": "yes"},
     "Enter a number, such as 0.5.", "请输入一个数，例如 0.5。"),
    ("root_admin", "/console/applications/{app}/approve", "confirm",
     {"epsilon": "0.5", "days": "5", "note": "typed note"},
     "Tick this box to confirm", "请勾选此框确认"),
    ("root_admin", "/console/applications/{app}/reject", "note", {"note": "  "},
     "Say why: the applicant sees your note.", "请说明理由：申请人会看到您的说明。"),
    ("root_admin", "/console/admin/grants", "dataset",
     {"holder": "user:ron", "dataset": "nope", "epsilon": "0.7"},
     "Choose a dataset from the list.", "请从列表中选择数据集。"),
    ("root_admin", "/console/admin/grants", "epsilon",
     {"holder": "user:ron", "dataset": "credit", "epsilon": "99"},
     "At most 3 here.", "此处最多为 3。"),
    ("root_admin", "/console/grants/{grant}/revoke", "note", {"note": "", "confirm": "yes"},
     "Say why you revoke this grant", "请说明撤销此授权的理由"),
    ("root_admin", "/console/grants/{grant}/extend", "epsilon",
     {"epsilon": "-1", "days": "7", "confirm": "yes"},
     "Enter a number greater than 0.", "请输入大于 0 的数。"),
    ("root_admin", "/console/admin/users", "password",
     {"username": "newbie", "role": "researcher", "password": "short"},
     "At least 8 characters", "请至少输入 8 个字符"),
    ("root_admin", "/console/admin/users", "org",
     {"username": "newbie", "role": "enterprise", "password": "long-enough-pw"},
     "An enterprise account needs an org.", "企业账号需要填写机构。"),
    ("root_admin", "/console/admin/users/rita/role", "confirm",
     {"role": "auditor", "note": "typed note"},
     "Tick this box to confirm", "请勾选此框确认"),
    ("root_admin", "/console/admin/users/rita/disable", "note", {"confirm": "yes"},
     "Say why you disable this account.", "请说明停用此账号的理由。"),
]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
@pytest.mark.parametrize(("who", "path", "field", "body", "english", "chinese"), CASES,
                         ids=[f"{c[1].split('/')[-1]}-{c[2]}" for c in CASES])
def test_a_wrong_form_keeps_the_input_and_says_what_is_wrong_beside_the_field(
        env: GatewayEnv, world: dict[str, Any], language: str, who: str, path: str,
        field: str, body: dict[str, str], english: str, chinese: str) -> None:
    before = (env.services.ledger.list(ADMIN), env.services.users.list(ADMIN),
              env.services.access.list(ADMIN))
    client, csrf = signed_in(env, who, language)
    resp = client.post(path.format(**world), data={**body, "csrf_token": csrf})
    assert resp.status_code == 422, resp.text[:2000]
    html = resp.text
    found = re.search(r'<p class="field-error" id="([a-z]+)-' + field + r'-error">([^<]*)</p>',
                      html)
    assert found, html[:3000]
    assert (chinese if language == "zh-CN" else english) in found.group(2)
    assert f'aria-describedby="{found.group(1)}-{field}-error' in html  # tied to its field
    for key, value in body.items():
        # (a password is never sent back; a choice not in its list has nothing to select)
        if key not in ("confirm", "password") and value.strip() and value != "nope":
            assert value in html, f"{key}={value!r} was not kept"
    after = (env.services.ledger.list(ADMIN), env.services.users.list(ADMIN),
             env.services.access.list(ADMIN))
    assert after == before  # nothing changed
