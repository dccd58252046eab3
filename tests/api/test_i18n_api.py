"""The API answers in the reader's language: the error ``message`` follows Accept-Language,
the ``code`` never changes, and the audit log keeps the English message."""

from __future__ import annotations

from gateway.services.audit import AuditFilter
from tests.conftest import GatewayEnv

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


def test_unknown_endpoint_in_chinese_with_the_same_code(gateway_env: GatewayEnv) -> None:
    english = gateway_env.client.get("/v1/nope")
    chinese = gateway_env.client.get("/v1/nope", headers=ZH)
    assert english.status_code == chinese.status_code == 404
    assert english.json()["error"] == {"code": "not_found", "message": "no such endpoint"}
    assert chinese.json()["error"] == {"code": "not_found", "message": "没有这个接口"}
    assert chinese.headers["content-language"] == "zh-CN"
    assert english.headers["content-language"] == "en"


def test_body_too_large_in_chinese(gateway_env: GatewayEnv) -> None:
    limit = gateway_env.services.settings.max_body_bytes
    resp = gateway_env.client.post("/v1/auth/token", content=b"x" * (limit + 1),
                                   headers={**ZH, "Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["error"] == {"code": "invalid_request",
                                    "message": f"请求体超过 {limit} 字节"}
    entries, _total = gateway_env.services.audit.page(
        AuditFilter(action="http body too large"), page=1, size=5)
    assert entries and entries[0]["detail"]["reason"] == f"request body over {limit} bytes"


def test_language_cookie_overrides_accept_language(gateway_env: GatewayEnv) -> None:
    resp = gateway_env.client.get("/v1/nope", headers={**ZH, "Cookie": "dps_lang=en"})
    assert resp.json()["error"]["message"] == "no such endpoint"


def test_catalog_titles_follow_the_readers_language(gateway_env: GatewayEnv) -> None:
    english = {d["name"]: d for d in gateway_env.get("rita", "/v1/datasets").json()}
    chinese = {d["name"]: d for d in gateway_env.client.get(
        "/v1/datasets", headers={**gateway_env.headers("rita"), **ZH}).json()}
    assert english["flights"]["title"] == "NYC departing flights 2013"
    assert chinese["flights"]["title"] == "2013 年纽约离港航班"
    assert chinese["flights"]["title_zh"] == english["flights"]["title_zh"] == "2013 年纽约离港航班"
    assert chinese["flights"]["columns"]["origin"]["description"] == "起飞机场"
    assert english["flights"]["columns"]["origin"]["description"] == "departure airport"
    one = gateway_env.client.get("/v1/datasets/exam",
                                 headers={**gateway_env.headers("rita"), **ZH}).json()
    assert one["title"] == "伦敦中学生考试成绩" and one["policy"]["title"] == "伦敦中学生考试成绩"


def test_query_refusals_in_chinese_with_the_same_code(gateway_env: GatewayEnv) -> None:
    """Messages raised in the domain (query validation, budgets) and in DP SQL."""
    env = gateway_env
    env.grant("ron", "flights", 1.0)
    cases = [
        ({"dataset": "flights", "select": [{"agg": "count"}], "epsilon": -1},
         "invalid_request", "epsilon 必须大于 0"),
        ({"dataset": "flights", "select": [{"agg": "sum", "column": "sched_dep_time"}],
          "epsilon": 0.1}, "unsupported_query", "列 sched_dep_time 在策略 flights 中没有取值范围"),
        ({"sql": "SELECT origin, COUNT(*) FROM flights JOIN exam ON 1 = 1 GROUP BY origin",
          "epsilon": 0.1}, "unsupported_query", "不支持 JOIN"),
        ({"sql": "SELECT COUNT(*) FROM flights WHERE month = 1 OR month = 2", "epsilon": 0.1},
         "unsupported_query", "不支持 OR（month = 1 OR month = 2）"),
    ]
    for body, code, chinese in cases:
        english = env.post("ron", "/v1/queries", body)
        zh = env.client.post("/v1/queries", json=body, headers={**env.headers("ron"), **ZH})
        assert zh.status_code == english.status_code, zh.text
        assert zh.json()["error"]["code"] == english.json()["error"]["code"] == code
        assert chinese in zh.json()["error"]["message"], zh.json()
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in english.json()["error"]["message"])


def _both(env: GatewayEnv, user: str, path: str, body: object) -> tuple[dict, dict]:
    english = env.post(user, path, body)
    chinese = env.client.post(path, json=body, headers={**env.headers(user), **ZH})
    assert english.status_code == chinese.status_code == 422, (english.text, chinese.text)
    assert english.json()["error"]["code"] == chinese.json()["error"]["code"] == "invalid_request"
    return english.json()["error"], chinese.json()["error"]


def test_body_validation_in_the_readers_language(gateway_env: GatewayEnv) -> None:
    """Request bodies refused by validation: the message translated (field names kept), the
    code unchanged, and the audit log's record English."""
    env = gateway_env
    cases = [
        ("root_admin", "/v1/users",
         {"username": "u1", "role": "boss", "password": "short"},
         "role: should be one of 'researcher', 'enterprise', 'admin', 'auditor'; "
         "password: should have at least 8 characters",
         "role：应为以下之一：'researcher'、'enterprise'、'admin'、'auditor'；"
         "password：应至少有 8 个字符"),
        ("rita", "/v1/requests", {"dataset": "flights", "purpose": "p" * 30, "colour": "red"},
         "colour: is not a known field here", "colour：不是此处可用的字段"),
        ("rita", "/v1/requests", {"purpose": "p" * 30, "epsilon": "lots"},
         "dataset: is required; epsilon: should be a number",
         "dataset：为必填项；epsilon：应为数字"),
        ("ron", "/v1/queries", {"sql": "SELECT COUNT(*) FROM flights", "epsilon": 0.1,
                                "select": [{"agg": "count"}]},
         "the request: send either sql or a structured query (dataset and select), not both",
         "请求：请发送 sql 或结构化查询（dataset 和 select）其中之一，不能两者都发"),
        ("ron", "/v1/queries", {"dataset": "flights", "select": [{"agg": "count", "q": True}],
                                "epsilon": 0.1},
         # a union says which of its members refused (q is a StrictFloat | StrictInt)
         "select.0.q.float: should be a number; select.0.q.int: should be a whole number",
         "select.0.q.float：应为数字；select.0.q.int：应为整数"),
    ]
    for user, path, body, english, chinese in cases:
        en, zh = _both(env, user, path, body)
        assert (en["message"], zh["message"]) == (english, chinese)
    entries, _total = env.services.audit.page(AuditFilter(actor="ron", outcome="denied"),
                                              page=1, size=5)
    assert entries[0]["detail"]["reason"] == english  # the record stays English


def test_a_structured_query_refused_inside_the_service_is_translated(
        gateway_env: GatewayEnv) -> None:
    """A query's spec is checked in the service (so that the refusal is audited with it)."""
    en, zh = _both(gateway_env, "ron", "/v1/queries",
                   {"dataset": "flights", "select": [], "epsilon": 0.1})
    assert en["message"] == "select: should have at least 1 item"
    assert zh["message"] == "select：应至少有 1 项"


def test_malformed_json_in_chinese(gateway_env: GatewayEnv) -> None:
    resp = gateway_env.client.post("/v1/auth/token", content=b"{not json",
                                   headers={**ZH, "Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["error"]["message"] == "1：不是有效的 JSON"
