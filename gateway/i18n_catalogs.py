"""The translation catalogs: extract marked strings, update the ``.po`` files, compile ``.mo``.

    python -m gateway.i18n_catalogs update     # what `make i18n` runs
    python -m gateway.i18n_catalogs check      # what tests/unit/test_i18n.py asserts

Each :class:`CatalogSource` is one gettext domain: the folder whose code and templates are
scanned (with the Babel mapping file beside it), and the folder that holds
``messages.pot`` (the English source) and ``<locale>/LC_MESSAGES/messages.po|.mo``.
Catalogs are written without source locations and sorted, so that two people adding
strings on two branches rarely conflict, and ``.mo`` files are committed so that an
install needs no build step. A developer's guide: docs/i18n.md.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
TARGET_LOCALES = ("zh_CN",)  # English is the source language: the .pot is its catalog
# Function names that mark a string (argument positions of singular, plural).
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None, "gettext": None, "N_": None, "_l": None, "lazy_gettext": None,
    "ngettext": (1, 2), "lazy_ngettext": (1, 2),
    "_counted": (2, 3),  # gateway/domain/input_errors.py: (ctx key, singular, plural)
}
COMMENT_TAGS = ("Translators:",)
# Fixed header dates: a re-extraction that finds nothing new changes no file (no merge noise).
HEADER_DATE = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CatalogSource:
    name: str
    sources: Path  # the folder scanned; mapping patterns are relative to it
    mapping: Path  # a Babel mapping file (babel.cfg)
    locale_dir: Path
    project: str = "dp-sandbox"

    def pot(self) -> Path:
        return self.locale_dir / "messages.pot"

    def po(self, locale: str) -> Path:
        return self.locale_dir / locale / "LC_MESSAGES" / "messages.po"

    def mo(self, locale: str) -> Path:
        return self.locale_dir / locale / "LC_MESSAGES" / "messages.mo"


CATALOGS = (
    CatalogSource("gateway", ROOT / "gateway", ROOT / "gateway" / "babel.cfg",
                  ROOT / "gateway" / "locale"),
    # the notebook library runs in the sandbox without the gateway: its own catalog
    CatalogSource("client", ROOT / "sandbox" / "client", ROOT / "sandbox" / "client" / "babel.cfg",
                  ROOT / "sandbox" / "client" / "locale"),
    # the hub's sign-in and home pages (JupyterHub templates, sandbox/hub/pages.py)
    CatalogSource("hub", ROOT / "sandbox" / "hub", ROOT / "sandbox" / "hub" / "babel.cfg",
                  ROOT / "sandbox" / "hub" / "locale"),
)


def _mapping(source: CatalogSource) -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    with source.mapping.open(encoding="utf-8") as handle:
        methods, options = parse_mapping_cfg(handle, filename=str(source.mapping))
    return methods, options


def extract(source: CatalogSource) -> Catalog:
    """Every marked string in the sources, as a template catalog (English)."""
    methods, options = _mapping(source)
    template = Catalog(project=source.project, charset="utf-8", fuzzy=False,
                       creation_date=HEADER_DATE, revision_date=HEADER_DATE)
    found = extract_from_dir(source.sources, methods, options, KEYWORDS, COMMENT_TAGS,
                             strip_comment_tags=True)
    for _filename, _lineno, message, comments, context in found:
        template.add(message, None, auto_comments=comments, context=context)
    return template


def _write_po(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, no_location=True, omit_header=False,
             sort_output=True, ignore_obsolete=True, include_previous=False)
    path.write_bytes(buffer.getvalue())


def _read_po(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def compiled(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def update(source: CatalogSource) -> None:
    """Re-extract, merge into each locale's .po (new strings untranslated), compile .mo."""
    template = extract(source)
    _write_po(template, source.pot())
    for locale in TARGET_LOCALES:
        path = source.po(locale)
        if path.exists():
            catalog = _read_po(path, locale)
        else:
            catalog = Catalog(locale=locale, project=source.project, charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        catalog.obsolete.clear()
        catalog.fuzzy = False
        catalog.creation_date = catalog.revision_date = HEADER_DATE
        catalog.last_translator = catalog.language_team = "dp-sandbox developers"
        _write_po(catalog, path)
        source.mo(locale).write_bytes(compiled(_read_po(path, locale)))


def _key(message_id: str | tuple[str, ...] | list[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


def problems(source: CatalogSource) -> list[str]:
    """What is wrong with the catalogs: untranslated, stale or uncompiled (empty when fine)."""
    found: list[str] = []
    wanted = {_key(m.id): m for m in extract(source) if m.id}
    for locale in TARGET_LOCALES:
        path = source.po(locale)
        if not path.exists():
            return [f"{path.relative_to(ROOT)} is missing: run `make i18n`"]
        catalog = _read_po(path, locale)
        have = {_key(m.id): m for m in catalog if m.id}
        for msgid in sorted(set(wanted) - set(have)):
            found.append(f"{locale}: not in the catalog (run `make i18n`): {msgid!r}")
        for msgid in sorted(set(have) - set(wanted)):
            found.append(f"{locale}: no longer in the code (run `make i18n`): {msgid!r}")
        for msgid, message in sorted(have.items()):
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if msgid in wanted and (message.fuzzy or not all(strings)):
                found.append(f"{locale}: no translation for {msgid!r}")
            if msgid in wanted and message.pluralizable != wanted[msgid].pluralizable:
                found.append(f"{locale}: singular/plural differs for {msgid!r} (run `make i18n`)")
        for message, errors in catalog.check():
            for error in errors:
                found.append(f"{locale}: {message.id!r}: {error}")
        found.extend(_mo_problems(source, locale, catalog))
    return found


def _frozen(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def _messages(catalog: Catalog) -> dict[object, object]:
    return {_frozen(m.id): _frozen(m.string) for m in catalog if m.id}


def _mo_problems(source: CatalogSource, locale: str, catalog: Catalog) -> Iterable[str]:
    mo = source.mo(locale)
    if not mo.exists():
        yield f"{mo.relative_to(ROOT)} is missing: run `make i18n`"
        return
    with mo.open("rb") as handle:
        shipped = read_mo(handle)
    expected = read_mo(io.BytesIO(compiled(catalog)))
    if _messages(shipped) != _messages(expected):
        yield f"{mo.relative_to(ROOT)} is older than its .po: run `make i18n`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.i18n_catalogs")
    parser.add_argument("command", choices=["update", "check"])
    args = parser.parse_args(argv)
    if args.command == "update":
        for source in CATALOGS:
            update(source)
        print("catalogs updated; translate the empty msgstr entries, then run `make i18n` again")
        return 0
    failures = [f"{s.name}: {p}" for s in CATALOGS for p in problems(s)]
    print("\n".join(failures) or "catalogs complete and up to date")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
