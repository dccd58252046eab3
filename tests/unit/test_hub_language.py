"""A new analyst's sandbox speaks their browser's language: ~/templates from
notebooks_templates/zh or /en, and DPSANDBOX_LANG for the client library."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox.hub import build_env
from sandbox.hub.language import from_accept_language, sandbox_language, templates_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("header", "expected"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
    ("fr-FR, zh-TW;q=0.5", "zh_CN"), ("en;q=0.2, zh;q=0.7", "zh_CN"), ("zh;q=0, en", "en"),
    ("fr, de", None), ("", None), (None, None), ("zh;q=abc", None),
])
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def _handler(header: str | None) -> SimpleNamespace:
    headers = {} if header is None else {"Accept-Language": header}
    return SimpleNamespace(request=SimpleNamespace(headers=headers))


def test_the_browser_decides_then_the_hub_then_english() -> None:
    assert sandbox_language(_handler("zh-CN,zh;q=0.9"), {}) == "zh_CN"
    assert sandbox_language(_handler("en"), {"DPSANDBOX_LANG": "zh_CN"}) == "en"
    assert sandbox_language(_handler(None), {"DPSANDBOX_LANG": "zh_CN"}) == "zh_CN"
    assert sandbox_language(None, {"DPSANDBOX_LANG": "zh-CN"}) == "zh_CN"  # a spawn by API
    assert sandbox_language(None, {}) == "en"


def test_templates_come_from_the_languages_folder(tmp_path: Path) -> None:
    templates = ROOT / "notebooks_templates"
    assert templates_source(templates, "zh_CN") == templates / "zh"
    assert templates_source(templates, "en") == templates / "en"
    for language in ("zh_CN", "en"):
        names = sorted(p.name for p in templates_source(templates, language).glob("*.ipynb"))
        assert names[0] == "01_getting_started.ipynb" and len(names) == 5
    assert templates_source(tmp_path, "zh_CN") == tmp_path  # a flat folder still works


def test_the_client_catalog_ships_in_the_sandbox_env(tmp_path: Path) -> None:
    locale = tmp_path / "sandbox" / "client" / "locale" / "zh_CN" / "LC_MESSAGES"
    locale.mkdir(parents=True)
    (tmp_path / "sandbox" / "__init__.py").write_text("")
    (locale / "messages.mo").write_bytes(b"")
    (locale / "messages.po").write_text("")
    sources = {p.relative_to(tmp_path).as_posix() for p in build_env._client_sources(tmp_path)}
    assert "sandbox/client/locale/zh_CN/LC_MESSAGES/messages.mo" in sources
    assert "sandbox/client/locale/zh_CN/LC_MESSAGES/messages.po" not in sources
