"""Translations: every marked string has a zh-CN translation, catalogs match the code,
and the reader's language is chosen as documented (docs/i18n.md)."""

from __future__ import annotations

import pytest

from gateway.domain.errors import InternalError, NotFound
from gateway.i18n import (
    _l,
    gettext,
    lazy_ngettext,
    locale_from_env,
    negotiate,
    use_locale,
)
from gateway.i18n_catalogs import CATALOGS, problems


@pytest.mark.parametrize("source", CATALOGS, ids=lambda s: s.name)
def test_every_marked_string_is_translated_and_catalogs_are_current(source) -> None:
    found = problems(source)
    assert not found, "translation catalogs need work (docs/i18n.md):\n" + "\n".join(found)


@pytest.mark.parametrize(("header", "cookie", "expected"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh_CN"),
    ("zh", None, "zh_CN"),
    ("zh-Hans-CN", None, "zh_CN"),
    ("en-US,en;q=0.9", None, "en"),
    ("fr-FR,zh-CN;q=0.5", None, "zh_CN"),   # the first language we carry
    ("zh-CN;q=0,en;q=0.5", None, "en"),     # q=0: not this one
    ("fr", None, "en"),
    (None, None, "en"),
    ("en-US", "zh_CN", "zh_CN"),            # the console's remembered switch wins
    ("zh-CN", "en", "en"),
    ("zh-CN", "klingon", "zh_CN"),          # a cookie we cannot use is ignored
    ("en;q=abc,zh", None, "zh_CN"),
])
def test_negotiation(header: str | None, cookie: str | None, expected: str) -> None:
    assert negotiate(header, cookie) == expected


def test_cli_language_from_the_environment() -> None:
    assert locale_from_env({"DPSANDBOX_LANG": "zh-CN", "LANG": "en_US.UTF-8"}) == "zh_CN"
    assert locale_from_env({"LANG": "zh_CN.UTF-8"}) == "zh_CN"
    assert locale_from_env({"DPSANDBOX_LANG": "en"}) == "en"
    assert locale_from_env({}) == "en"


def test_lazy_text_is_translated_when_shown_and_english_for_the_record() -> None:
    text = _l("request body over %(limit)s bytes", limit=10)
    assert text.english == "request body over 10 bytes"
    with use_locale("zh_CN"):
        assert str(text) == "请求体超过 10 字节"
        assert gettext("Sign in") == "登录"
    assert str(text) == "request body over 10 bytes"
    assert gettext("Sign in") == "Sign in"


def test_domain_error_keeps_english_and_localizes_on_demand() -> None:
    exc = NotFound(_l("Dataset %(name)s", name="flights"))
    with use_locale("zh-CN"):
        assert exc.message == "Dataset flights"  # what the audit log keeps
        assert exc.localized() == "数据集 flights"
        assert "程序缺陷" in InternalError("boom").localized()
    assert InternalError("boom").message.endswith("(this is a bug in dp-sandbox; it has been logged)")
    assert NotFound("not marked").localized() == "not marked"


def test_plural_text() -> None:
    text = lazy_ngettext("%(num)s entry", "%(num)s entries", 2)
    assert text.english == "2 entries"
    assert lazy_ngettext("%(num)s entry", "%(num)s entries", 1).english == "1 entry"


def test_the_english_record_stays_english_whatever_the_readers_language() -> None:
    """What the audit log keeps (``exc.message``) is English even when the error is raised
    while answering a Chinese reader, words put into the sentence included."""
    from gateway.domain.errors import Conflict
    from gateway.domain.text import Joined
    from gateway.domain.workflow import next_state, word

    with use_locale("zh_CN"):
        try:
            next_state({"approved": {}}, "approved", "approve", "data-use application")
        except Conflict as exc:
            assert exc.message == "cannot approve this data-use application: it is approved"
            assert exc.localized() == "无法批准此数据使用申请：其状态为「已批准」"
        roles = Joined((word("researcher"), word("enterprise")), _l(" or "))
        assert str(roles) == "研究人员或企业分析人员"
        assert roles.render("en") == "researcher or enterprise"


def _domain_errors() -> set[str]:
    import inspect

    from gateway.domain import errors

    return {name for name, value in vars(errors).items()
            if inspect.isclass(value) and issubclass(value, errors.DomainError)}


def test_no_error_is_raised_with_a_message_that_cannot_be_translated() -> None:
    """A DomainError built from a plain string literal or an f-string reaches the reader in
    English only (the extractor never sees it): every one is written with ``_l``."""
    import ast
    from pathlib import Path

    import gateway

    names = _domain_errors()
    found = []
    for path in sorted(Path(gateway.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) in names
                    and node.args and isinstance(node.args[0], ast.JoinedStr | ast.Constant)):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, "write these messages with _l(...) (docs/i18n.md):\n" + "\n".join(found)
