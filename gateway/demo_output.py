"""What ``dpsandbox demo`` prints: a banner, one progress line per step, then the accounts,
the URLs and the first steps, in the reader's language (``DPSANDBOX_LANG``, docs/i18n.md).

Nothing else reaches the terminal: the gateway's, the hub's, the proxy's and the analysts'
servers' logs go to files under ``DPSANDBOX_HOME/logs`` (gateway/demo.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gateway.i18n import _, _l

console = Console(highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    org: str | None
    password: str | None  # None: the account existed before this run


def say(message: str = "") -> None:
    console.print(message)


def banner(home: Path, logs: Path) -> None:
    say(_("[bold]dp-sandbox demo[/bold]: usable but invisible (可用不可见)"))
    say(str(_l("  state %(home)s, logs %(logs)s", home=home, logs=logs)))


class Steps:
    """Numbered progress lines: ``[2/4] starting the gateway ... ready (1.3 s)``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    @contextmanager
    def step(self, text: str) -> Iterator[list[str]]:
        """Print the step, run it; the caller appends the outcome (default: "done")."""
        self.done += 1
        console.print(f"[{self.done}/{self.total}] {text} ...", end="")
        outcome: list[str] = []
        started = time.monotonic()
        try:
            yield outcome
        except BaseException:
            console.print(" " + _("[red]failed[/red]"))
            raise
        seconds = f"{time.monotonic() - started:.1f}"
        console.print(" " + (outcome[0] if outcome else _("done")) + " "
                      + str(_l("(%(seconds)s s)", seconds=seconds)))
        for line in outcome[1:]:
            say("      " + line)


def role_name(role: str) -> str:
    names = {"admin": _("administrator"), "auditor": _("auditor"),
             "researcher": _("researcher"), "enterprise": _("enterprise analyst")}
    return names.get(role, role)


def accounts(listed: list[Account]) -> None:
    new = [a for a in listed if a.password is not None]
    old = [a for a in listed if a.password is None]
    if new:
        say()
        say(_("Demo accounts (passwords are shown this once; write them down):"))
        for a in new:
            org = str(_l(" (org %(org)s)", org=a.org)) if a.org else ""
            padded = a.username.ljust(11)
            say(f"  {role_name(a.role):<12} " + str(_l("user %(user)s  password %(password)s",
                                                       user=padded, password=a.password)) + org)
    if old:
        say()
        names = ", ".join(a.username for a in old)
        say(str(_l("Demo accounts already exist: %(names)s. Their passwords were printed on the "
                   "first run; lost them? stop the demo, delete DPSANDBOX_HOME and run it again, "
                   "or add an account with `dpsandbox user add NAME --role ...`.", names=names)))


def next_steps(gateway_url: str, hub_url: str | None, logs: Path) -> None:
    say()
    say(_("dp-sandbox is running:"))
    console_url, docs = gateway_url + "/console", gateway_url + "/docs"
    if hub_url:
        notebooks = hub_url + "/"
        say("  " + str(_l("notebooks (JupyterHub)  %(url)s", url=notebooks)))
    say("  " + str(_l("web console             %(url)s", url=console_url)))
    say("  " + str(_l("API docs                %(url)s", url=docs)))
    say()
    say(_("What to do first:"))
    if hub_url:
        first = _("Sign in to JupyterHub as `researcher`; the scenario notebooks wait in "
                  "~/templates. In a notebook: `from sandbox import connect; gw = connect(); "
                  "gw.datasets()`. Open data (exam) answers at once; "
                  "`gw.request_access(\"flights\", ...)` applies for the rest.")
    else:
        first = str(_l("From Python: `from sandbox import connect; gw = connect(\"%(url)s\", "
                       "username=\"researcher\", password=...)`.", url=gateway_url))
    lines = [first,
             _("Sign in to the console as `admin` to approve applications and review queries "
               "on restricted data (credit)."),
             _("Sign in as `auditor` to read and verify the audit log.")]
    for number, line in enumerate(lines, start=1):
        say(f"  {number}. {line}")
    say()
    say(str(_l("Logs: %(logs)s. Press Ctrl-C to stop everything.", logs=logs)))


def stopped() -> None:
    say(_("dp-sandbox demo stopped."))
