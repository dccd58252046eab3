"""``dpsandbox``: run the gateway, the hub or the whole demo; manage users, data, grants, audit.

Administrative commands act directly on the local store as ``cli:<os user>`` (role admin):
whoever can run them can already read the gateway's files. Every action is audited.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ["RUST_BACKTRACE"] = "0"

from rich.console import Console
from rich.table import Table

from gateway.domain.errors import DomainError
from gateway.settings import Settings


class _Console:
    """A rich Console made at each use, so the terminal width is read when printing."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(Console(**self._options), name)


console = _Console()
err = _Console(stderr=True)


def _services(migrate: bool = True) -> Any:
    from gateway.bootstrap import bootstrap

    return bootstrap(Settings(), migrate=migrate)


def cli_actor() -> Any:
    from gateway.services.common import Principal

    return Principal(username=f"cli:{getpass.getuser()}"[:64], role="admin")


def read_password(path: str | None, prompt: str = "Password: ") -> str:
    if path:
        return Path(path).read_text(encoding="utf-8").rstrip("\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != first:
        raise SystemExit("passwords differ")
    return first


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


# -- commands ----------------------------------------------------------------------------


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_level="warning",
                access_log=False)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    svc = _services()
    password = read_password(args.password_file)
    user = svc.users.create(cli_actor(), username=args.name, role=args.role, password=password,
                            org=args.org)
    console.print(f"created {user['role']} [bold]{user['username']}[/bold]"
                  + (f" of {user['org']}" if user["org"] else ""))
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    _table(_services().users.list(cli_actor()), ["username", "role", "org", "disabled",
                                                 "created_at"], "users")
    return 0


def cmd_dataset_add(args: argparse.Namespace) -> int:
    svc = _services()
    rec = svc.catalog.register(cli_actor(), name=args.name, data=Path(args.data),
                               policy_file=Path(args.policy) if args.policy else None)
    console.print(f"registered [bold]{rec.name}[/bold] version {rec.version} "
                  f"({rec.row_count} rows, access {rec.policy.access})")
    return 0


def cmd_dataset_list(args: argparse.Namespace) -> int:
    svc = _services()
    rows = [svc.catalog.summary(r, for_admin=True) for r in svc.catalog.records()]
    _table(rows, ["name", "title", "domain", "access", "version", "epsilon_spent",
                  "dataset_epsilon_cap"], "datasets")
    return 0


def cmd_grant_add(args: argparse.Namespace) -> int:
    grant = _services().ledger.give(cli_actor(), user=args.user, org=args.org,
                                    dataset=args.dataset, epsilon=args.epsilon,
                                    delta=args.delta, days=args.days)
    console.print(f"grant {grant['id']}: epsilon {grant['epsilon_total']:g} on "
                  f"{grant['dataset']} for {grant['user'] or grant['org']} until "
                  f"{grant['expires_at']}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    report = _services().audit.verify()
    if report.ok:
        console.print(f"audit log intact: {report.entries} entries, head {report.head}")
        return 0
    err.print(f"audit log DAMAGED: first bad entry seq {report.first_bad_seq}: {report.problem}")
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    svc = _services()
    body = svc.audit.export(args.format)
    svc.audit.record(action="audit.export", outcome="ok", actor=cli_actor(),
                     detail={"format": args.format, "output": args.output})
    if args.output:
        Path(args.output).write_text(body, encoding="utf-8")
        err.print(f"wrote {args.output}")
    else:
        sys.stdout.write(body)
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    from sandbox.hub import run as hub_run

    return int(hub_run.main(port=args.port) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(gateway_port=args.gateway_port, hub_port=args.hub_port, hub=not args.no_hub)


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpsandbox", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("gateway", help="run the gateway (FastAPI)")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8600)
    g.set_defaults(func=cmd_gateway)

    h = sub.add_parser("hub", help="run JupyterHub with isolated sandboxes")
    h.add_argument("--port", type=int, default=8000)
    h.set_defaults(func=cmd_hub)

    d = sub.add_parser("demo", help="run the whole system on this machine")
    d.add_argument("--gateway-port", type=int, default=8600)
    d.add_argument("--hub-port", type=int, default=8000)
    d.add_argument("--no-hub", action="store_true", help="gateway and console only")
    d.set_defaults(func=cmd_demo)

    u = sub.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    ua = u.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--role", required=True,
                    choices=["researcher", "enterprise", "admin", "auditor"])
    ua.add_argument("--org")
    ua.add_argument("--password-file")
    ua.set_defaults(func=cmd_user_add)
    u.add_parser("list").set_defaults(func=cmd_user_list)

    ds = sub.add_parser("dataset", help="datasets").add_subparsers(dest="action", required=True)
    da = ds.add_parser("add")
    da.add_argument("name")
    da.add_argument("--data", required=True)
    da.add_argument("--policy")
    da.set_defaults(func=cmd_dataset_add)
    ds.add_parser("list").set_defaults(func=cmd_dataset_list)

    gr = sub.add_parser("grant", help="grants").add_subparsers(dest="action", required=True)
    ga = gr.add_parser("add")
    who = ga.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--org")
    ga.add_argument("--dataset", required=True)
    ga.add_argument("--epsilon", type=float, required=True)
    ga.add_argument("--delta", type=float)
    ga.add_argument("--days", type=int)
    ga.set_defaults(func=cmd_grant_add)

    au = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    au.add_parser("verify").set_defaults(func=cmd_audit_verify)
    ae = au.add_parser("export")
    ae.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    ae.add_argument("--output")
    ae.set_defaults(func=cmd_audit_export)

    try:
        from gateway.cli_requests import add_request_commands
    except ImportError:
        pass
    else:
        add_request_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DomainError as exc:
        err.print(f"[red]error ({exc.code}):[/red] {exc.message}")
        return 2
    except KeyboardInterrupt:
        return 130


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
