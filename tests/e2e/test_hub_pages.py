"""The hub's sign-in and home pages follow the browser's language and lead to the console.

A real hub with the real configuration (sandbox/hub/pages.py, sandbox/hub/templates).
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.hubclient import HubBrowser
from tests.e2e.support import PASSWORD, Gateway, Hub

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-hub-pages")]
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def test_sign_in_page_in_chinese_and_english(hub: Hub, gateway: Gateway) -> None:
    chinese = httpx.get(f"{hub.url}/hub/login", headers=ZH)
    assert chinese.status_code == 200
    for text in ("请使用您的 dp-sandbox 分析人员账户登录", "用户名：", "密码：", 'value="登录"'):
        assert text in chinese.text, text
    assert "Username:" not in chinese.text and "Sign in with" not in chinese.text
    assert f'href="{gateway.url}/console"' in chinese.text
    english = httpx.get(f"{hub.url}/hub/login", headers=EN)
    for text in ("Sign in with your dp-sandbox analyst account", "Username:", "Password:"):
        assert text in english.text, text
    assert "用户名" not in english.text
    assert 'name="_xsrf"' in chinese.text and 'name="_xsrf"' in english.text  # the form works


@pytest.mark.parametrize(("headers", "expected", "absent"), [
    (ZH, ["打开 Web 控制台", "启动我的服务器", "首页", "退出"], "Start My Server"),
    (EN, ["Open the web console", "Start my server", "Home", "Sign out"], "启动"),
])
def test_home_page_links_to_the_console(hub: Hub, gateway: Gateway,
                                        analysts: tuple[str, str], headers: dict[str, str],
                                        expected: list[str], absent: str) -> None:
    browser = HubBrowser(hub.url)
    browser.http.headers.update(headers)
    try:
        assert browser.login(analysts[0], PASSWORD).status_code == 302
        home = browser.http.get("/hub/home")
        assert home.status_code == 200, home.text
        for text in expected:
            assert text in home.text, text
        assert absent not in home.text
        assert f'id="dpsandbox-console-link" class="btn btn-outline-secondary" href="{gateway.url}/console"' \
            in home.text
        assert 'id="start"' in home.text  # the stock page's script still finds its buttons
    finally:
        browser.close()
