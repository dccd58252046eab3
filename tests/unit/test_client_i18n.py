"""The client library's own catalog: every message has a zh-CN translation, the shipped
.mo is compiled from the current .po, and DPSANDBOX_LANG=zh_CN makes the library speak
Chinese (messages, notes, displays)."""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from sandbox.client import _i18n
from sandbox.client._i18n import LOCALE_DIR, accept_language, language

ROOT = Path(__file__).resolve().parents[2]
PO = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "dpsandbox_client.po"
MO = PO.with_suffix(".mo")
_FIELD = re.compile(r"\{[^{}]*\}")


def _extracted() -> set[str]:
    return {message for _file, _line, message, _comments, _ctx in
            extract_from_dir(str(ROOT / "sandbox" / "client")) if isinstance(message, str)}


def test_every_client_message_has_a_chinese_translation() -> None:
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN")
    translated = {m.id: m.string for m in catalog if m.id}
    messages = _extracted()
    assert len(messages) > 30  # the extraction really found the library's messages
    missing = sorted(m for m in messages if not translated.get(m))
    assert not missing, f"no zh_CN translation (run `make client-catalog`): {missing}"
    for msgid in messages:  # the same placeholders, or .format() would fail in Chinese
        assert sorted(_FIELD.findall(msgid)) == sorted(_FIELD.findall(translated[msgid])), msgid
    assert not catalog.fuzzy


def test_the_shipped_mo_is_compiled_from_the_po() -> None:
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN")
    fresh = io.BytesIO()
    write_mo(fresh, catalog)
    fresh.seek(0)
    shipped = gettext.GNUTranslations(MO.open("rb"))
    expected = gettext.GNUTranslations(fresh)
    for message in catalog:
        if message.id:
            assert shipped.gettext(message.id) == expected.gettext(message.id), message.id


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
