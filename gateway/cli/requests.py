"""``dpsandbox requests list|show ID|approve ID|reject ID``: decide data-use applications.

The commands act as ``cli:<os user>`` (role admin) through the same AccessService as the
API and the web console, so the same rules hold (never raise epsilon or days, a note for
every change and every rejection) and every decision is audited.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from gateway.cli.common import cli_actor, console, print_table, services
from gateway.domain.workflow import APPLICATION_TRANSITIONS, word
from gateway.i18n import _

LIST_COLUMNS = ["id", "status", "applicant", "org", "dataset", "epsilon", "days", "created_at",
                "decided_by"]


def _access() -> Any:
    return services().access


def _print_application(app: dict[str, Any]) -> None:
    table = Table(title=_("application %(id)s") % {"id": app["id"]}, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("status", "applicant", "org", "dataset", "purpose", "epsilon", "days",
                "auto_approved", "created_at", "decided_by", "decided_at", "note", "grant_id"):
        table.add_row(key, "" if app.get(key) is None else str(app[key]))
    console.print(table)
    grant = app.get("grant")
    if grant:
        console.print(_("grant %(id)s: epsilon %(total)s (spent %(spent)s) until %(until)s, "
                        "%(status)s") % {
            "id": grant["id"], "total": f"{grant['epsilon_total']:g}",
            "spent": f"{grant['epsilon_spent']:g}", "until": grant["expires_at"],
            "status": word(grant["status"])})


def _print_context(ctx: dict[str, Any]) -> None:
    who = ctx["applicant"]
    names = {"name": who["username"], "role": word(who["role"]), "org": who["org"]}
    line = (_("applicant [bold]%(name)s[/bold]: %(role)s of %(org)s") % names if who["org"]
            else _("applicant [bold]%(name)s[/bold]: %(role)s") % names)
    console.print(line + (_(" (disabled)") if who["disabled"] else ""))
    ds = ctx["dataset"]
    console.print(_("dataset %(name)s (%(access)s): epsilon spent %(spent)s of cap %(cap)s; max per "
                    "grant %(most)s; %(active)s active grants") % {
        "name": ds["name"], "access": word(ds["access"]), "spent": f"{ds['epsilon_spent']:g}",
        "cap": f"{ds['dataset_epsilon_cap']:g}", "most": f"{ds['max_epsilon_per_grant']:g}",
        "active": ds["active_grants"]})
    print_table(ctx["past_applications"], ["id", "dataset", "status", "epsilon", "days",
                                           "decided_by", "note"], _("past applications"))
    print_table(ctx["grants"], ["id", "dataset", "user", "org", "epsilon_total",
                                "epsilon_spent", "expires_at", "status"], _("grants"))
    print_table(ctx["recent_queries"], ["id", "user", "status", "epsilon", "created_at"],
                _("recent queries on %(dataset)s") % {"dataset": ds["name"]})


def cmd_list(args: argparse.Namespace) -> int:
    rows = _access().list(cli_actor(), status=args.status)
    print_table(rows, LIST_COLUMNS, _("applications (%(status)s)")
                % {"status": word(args.status or "all")})
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = _access().get(cli_actor(), args.id)
    _print_application(app)
    if "context" in app:
        _print_context(app["context"])
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    app = _access().approve(cli_actor(), args.id, epsilon=args.epsilon, days=args.days,
                            note=args.note)
    grant = app["grant"]
    console.print(_("approved %(id)s for %(holder)s: grant %(grant)s, epsilon %(epsilon)s on "
                    "%(dataset)s until %(until)s") % {
        "id": app["id"], "holder": grant["org"] or grant["user"], "grant": grant["id"],
        "epsilon": f"{grant['epsilon_total']:g}", "dataset": grant["dataset"],
        "until": grant["expires_at"]})
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    app = _access().reject(cli_actor(), args.id, note=args.note)
    console.print(_("rejected %(id)s of %(applicant)s on %(dataset)s") % {
        "id": app["id"], "applicant": app["applicant"], "dataset": app["dataset"]})
    return 0


def add_request_commands(subparsers: Any) -> None:
    """Add ``requests`` to the ``dpsandbox`` parser (called by :func:`gateway.cli.build_parser`)."""
    requests = subparsers.add_parser("requests", help=_("data-use applications"))
    actions = requests.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help=_("applications, newest first"))
    listing.add_argument("--status", choices=list(APPLICATION_TRANSITIONS))
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help=_("one application and what a decision needs"))
    show.add_argument("id")
    show.set_defaults(func=cmd_show)

    approve = actions.add_parser("approve", help=_("approve, perhaps for less; creates the grant"))
    approve.add_argument("id")
    approve.add_argument("--epsilon", type=float, help=_("at most what was asked for"))
    approve.add_argument("--days", type=int, help=_("at most what was asked for"))
    approve.add_argument("--note", required=True, help=_("why (shown to the applicant)"))
    approve.set_defaults(func=cmd_approve)

    reject = actions.add_parser("reject", help=_("reject, saying why"))
    reject.add_argument("id")
    reject.add_argument("--note", required=True, help=_("why (shown to the applicant)"))
    reject.set_defaults(func=cmd_reject)
