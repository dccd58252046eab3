"""``dpsandbox``: run the gateway, the hub or the whole demo; manage users, data, grants, audit.

Administrative commands act directly on the local store as ``cli:<os user>`` (role admin):
whoever can run them can already read the gateway's files. Every action is audited.

Modules: :mod:`.common` (consoles, services, the acting admin), :mod:`.commands` (gateway,
hub, demo, user, dataset, grant, audit), :mod:`.requests` (data-use applications),
:mod:`.image` (the sandbox image of Docker isolation).
"""

from __future__ import annotations

import argparse
import os

os.environ["RUST_BACKTRACE"] = "0"

from gateway.cli.commands import add_admin_commands
from gateway.cli.common import err
from gateway.cli.image import add_image_commands
from gateway.cli.requests import add_request_commands
from gateway.domain.errors import DomainError
from gateway.i18n import _, locale_from_env, use_locale

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpsandbox", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_admin_commands(sub)
    add_request_commands(sub)
    add_image_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    with use_locale(locale_from_env()):  # DPSANDBOX_LANG (docs/i18n.md)
        args = build_parser().parse_args(argv)
        try:
            return int(args.func(args))
        except DomainError as exc:
            err.print(_("[red]error (%(code)s):[/red] %(message)s")
                      % {"code": exc.code, "message": exc.localized()})
            return 2
        except KeyboardInterrupt:
            return 130
