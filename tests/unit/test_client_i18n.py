"""The client library speaks Chinese with DPSANDBOX_LANG=zh_CN (messages, notes, displays),
from its own catalog shipped in the package (sandbox/client/locale)."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from sandbox.client import _i18n
from sandbox.client._i18n import LOCALE_DIR, accept_language, language

PO = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po"
_FIELD = re.compile(r"\{[^{}]*\}")


def test_translations_keep_every_placeholder() -> None:
    """Completeness and freshness are tests/unit/test_i18n.py's (catalog "client");
    the client formats with str.format, so a lost ``{name}`` would fail in Chinese."""
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN")
    messages = [m for m in catalog if m.id]
    assert len(messages) > 30
    for message in messages:
        assert sorted(_FIELD.findall(message.id)) == sorted(_FIELD.findall(message.string)), \
            message.id


@pytest.mark.parametrize(("env", "expected"), [
    ({"DPSANDBOX_LANG": "zh_CN"}, "zh_CN"), ({"DPSANDBOX_LANG": "zh-CN"}, "zh_CN"),
    ({"DPSANDBOX_LANG": "en"}, "en"), ({"LANG": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "C.UTF-8"}, "en"), ({"DPSANDBOX_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    ({}, "en"),
])
def test_the_language_comes_from_dpsandbox_lang_then_the_locale(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name in ("DPSANDBOX_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert language() == expected
    assert accept_language().startswith("zh-CN" if expected == "zh_CN" else "en")


def test_client_messages_in_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.client._preview import Preview
    from sandbox.client._results import budget_note
    from sandbox.client._suggest import did_you_mean

    monkeypatch.setenv("DPSANDBOX_LANG", "zh_CN")
    assert did_you_mean("orign", ["origin", "dest"]) == "；您是不是要找 origin？"
    note = budget_note(dataset="flights", epsilon_charged=0.2, cached=False,
                       budget={"epsilon_remaining": 1.8}, total_left=3.8)
    assert note == "flights: 已发布 | 扣除 epsilon 0.2 | 剩余 epsilon 1.8 | 您在 flights 上的全部授权：3.8"
    preview = Preview.from_answer({"dataset": "exam", "epsilon": 0.5,
                                   "accuracy": {"alpha": 0.05, "count": 3.0}})
    assert "尚无授权" in repr(preview) and "本次未消耗预算" in preview._repr_html_()
    monkeypatch.setenv("DPSANDBOX_LANG", "en")
    assert _i18n._("no grant yet") == "no grant yet"
    assert did_you_mean("orign", ["origin"]) == "; did you mean origin?"
