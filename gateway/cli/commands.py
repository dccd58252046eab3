"""``dpsandbox`` commands: run the gateway, the hub or the demo; users, data, grants, audit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import cli_actor, console, err, print_table, read_password, services
from gateway.domain.workflow import word
from gateway.i18n import _
from gateway.settings import Settings


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.server import serve

    settings = Settings()
    serve(create_app(settings), settings, host=args.host, port=args.port)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    svc = services()
    password = read_password(args.password_file)
    user = svc.users.create(cli_actor(), username=args.name, role=args.role, password=password,
                            org=args.org)
    names = {"role": str(word(user["role"])), "name": user["username"], "org": user["org"]}
    console.print(_("created %(role)s [bold]%(name)s[/bold] of %(org)s") % names if user["org"]
                  else _("created %(role)s [bold]%(name)s[/bold]") % names)
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    print_table(services().users.list(cli_actor()), ["username", "role", "org", "disabled",
                                                 "created_at"], _("users"))
    return 0


def cmd_dataset_add(args: argparse.Namespace) -> int:
    svc = services()
    rec = svc.catalog.register(cli_actor(), name=args.name,
                               data=Path(args.data) if args.data else None,
                               policy_file=Path(args.policy) if args.policy else None)
    console.print(_("registered [bold]%(name)s[/bold] version %(version)s (%(rows)s rows, access "
                    "%(access)s)") % {"name": rec.name, "version": rec.version,
                                      "rows": rec.row_count, "access": word(rec.policy.access)})
    return 0


def cmd_dataset_list(args: argparse.Namespace) -> int:
    svc = services()
    rows = [svc.catalog.summary(r, for_admin=True) for r in svc.catalog.records()]
    print_table(rows, ["name", "title", "domain", "access", "version", "accounting",
                       "epsilon_spent", "dataset_epsilon_cap", "rho_spent", "dataset_rho_cap"],
                _("datasets"))  # a zCDP dataset spends rho: its epsilon_spent stays 0
    return 0


def cmd_grant_add(args: argparse.Namespace) -> int:
    grant = services().ledger.give(cli_actor(), user=args.user, org=args.org,
                                    dataset=args.dataset, epsilon=args.epsilon,
                                    delta=args.delta, days=args.days)
    size = f"epsilon {grant['epsilon_total']:g}"
    if grant.get("accounting") == "zcdp":  # docs/zcdp.md
        size = _("rho %(rho)s (zCDP: epsilon %(epsilon)s at delta %(delta)s)") % {
            "rho": f"{grant['rho_total']:.12g}", "epsilon": f"{grant['epsilon_total']:g}",
            "delta": f"{grant['conversion_delta']:g}"}
    console.print(_("grant %(id)s: %(size)s on %(dataset)s for %(holder)s until %(until)s") % {
        "id": grant["id"], "size": size, "dataset": grant["dataset"],
        "holder": grant["user"] or grant["org"], "until": grant["expires_at"]})
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    report = services().audit.verify()
    if report.ok:
        console.print(_("audit log intact: %(entries)s entries, head %(head)s")
                      % {"entries": report.entries, "head": report.head})
        return 0
    err.print(_("audit log DAMAGED: first bad entry seq %(seq)s: %(problem)s")
              % {"seq": report.first_bad_seq, "problem": report.problem})
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    svc = services()
    body = svc.audit.export(args.format, cli_actor(), roles=("admin",), output=args.output)
    if args.output:
        Path(args.output).write_text(body, encoding="utf-8")
        err.print(_("wrote %(path)s") % {"path": args.output})
    else:
        sys.stdout.write(body)
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    from sandbox.hub import run as hub_run

    return int(hub_run.main(port=args.port) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(gateway_port=args.gateway_port, hub_port=args.hub_port, hub=not args.no_hub)




def add_admin_commands(sub: Any) -> None:
    """Add the gateway, hub, demo, user, dataset, grant and audit commands."""

    g = sub.add_parser("gateway", help=_("run the gateway (FastAPI)"))
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8600)
    g.set_defaults(func=cmd_gateway)

    h = sub.add_parser("hub", help=_("run JupyterHub with isolated sandboxes"))
    h.add_argument("--port", type=int, default=8000)
    h.set_defaults(func=cmd_hub)

    d = sub.add_parser("demo", help=_("run the whole system on this machine"))
    d.add_argument("--gateway-port", type=int, default=8600)
    d.add_argument("--hub-port", type=int, default=8000)
    d.add_argument("--no-hub", action="store_true", help=_("gateway and console only"))
    d.set_defaults(func=cmd_demo)

    u = sub.add_parser("user", help=_("accounts")).add_subparsers(dest="action", required=True)
    ua = u.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--role", required=True,
                    choices=["researcher", "enterprise", "admin", "auditor"])
    ua.add_argument("--org")
    ua.add_argument("--password-file")
    ua.set_defaults(func=cmd_user_add)
    u.add_parser("list").set_defaults(func=cmd_user_list)

    ds = sub.add_parser("dataset", help=_("datasets")).add_subparsers(dest="action", required=True)
    da = ds.add_parser("add")
    da.add_argument("name")
    da.add_argument("--data", help=_("the data file (.csv, .parquet); none for engine: spark, "
                                     "whose policy's source is read in place"))
    da.add_argument("--policy")
    da.set_defaults(func=cmd_dataset_add)
    ds.add_parser("list").set_defaults(func=cmd_dataset_list)

    gr = sub.add_parser("grant", help=_("grants")).add_subparsers(dest="action", required=True)
    ga = gr.add_parser("add")
    who = ga.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--org")
    ga.add_argument("--dataset", required=True)
    ga.add_argument("--epsilon", type=float, required=True)
    ga.add_argument("--delta", type=float)
    ga.add_argument("--days", type=int)
    ga.set_defaults(func=cmd_grant_add)

    au = sub.add_parser("audit", help=_("the audit log")).add_subparsers(dest="action", required=True)
    au.add_parser("verify").set_defaults(func=cmd_audit_verify)
    ae = au.add_parser("export")
    ae.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    ae.add_argument("--output")
    ae.set_defaults(func=cmd_audit_export)
