"""What every ``dpsandbox`` command shares: the consoles, the services, the acting admin."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.i18n import _
from gateway.settings import Settings


class _Console:
    """A rich Console made at each use, so the terminal width is read when printing."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(Console(**self._options), name)


console = _Console()
err = _Console(stderr=True)


def services(migrate: bool = True) -> Any:
    from gateway.bootstrap import bootstrap

    return bootstrap(Settings(), migrate=migrate)


def cli_actor() -> Any:
    from gateway.services.common import Principal

    return Principal(username=f"cli:{getpass.getuser()}"[:64], role="admin")


def read_password(path: str | None, prompt: str | None = None) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8").rstrip("\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt or _("Password: "))
    if getpass.getpass(_("Again: ")) != first:
        raise SystemExit(_("passwords differ"))
    return first


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))
