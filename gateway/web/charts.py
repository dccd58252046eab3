"""Privacy budget spent over time, per dataset and per analyst, drawn as server-side SVG.

The numbers come from the audit log's ``query.charge`` entries (each states the loss
charged, the dataset and the analyst charged); the template draws the geometry computed
here, and a table beside each chart gives the same totals for screen readers. Each series
has its limit as a dashed line: a dataset's cap, or the budget granted to an analyst.

Charges are drawn in the unit of their dataset's accounting: epsilon under pure DP, rho
under zCDP (whose entries keep epsilon 0 and the rho in ``detail``). The two units do not
add up, so each has its own charts, shown when there is something to show in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.i18n import N_, _
from gateway.services.audit import MAX_PAGE, AuditFilter, AuditLog

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 76, 20, 16, 44  # room for ticks like 0.00625 (rho)
MAX_SERIES = 8
# Okabe-Ito: distinguishable with the common colour-vision deficiencies; dashes help more.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "", "6 3", "2 3", "8 3 2 3")


EPSILON, RHO = "epsilon", "rho"  # parameter names: the same in every language


@dataclass(frozen=True)
class Charge:
    at: datetime
    dataset: str
    analyst: str
    amount: Decimal
    unit: str = EPSILON


@dataclass
class Series:
    name: str
    colour: str
    dash: str
    points: str
    total: Decimal
    charges: int
    limit: Decimal | None = None  # the dataset's cap, or the analyst's granted total
    limit_y: float | None = None


@dataclass
class Chart:
    key: str
    title: str
    description: str
    kind: str = "dataset"  # or "analyst": what a series is
    unit: str = EPSILON
    width: int = WIDTH
    height: int = HEIGHT
    series: list[Series] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM
    right: int = WIDTH - RIGHT
    top: int = TOP
    hidden_series: int = 0
    rows: list[tuple[str, Decimal, int, Decimal | None]] = field(default_factory=list)


def charges(audit: AuditLog) -> list[Charge]:
    return sorted(_charges(audit), key=lambda c: c.at)


def _charges(audit: AuditLog) -> Iterator[Charge]:
    flt, number = AuditFilter(action="query.charge", outcome="ok"), 1
    while True:
        entries, total = audit.page(flt, page=number, size=MAX_PAGE)
        for entry in entries:
            found = _charge(entry)
            if found is not None:
                yield found
        if number * MAX_PAGE >= total:
            return
        number += 1


def _charge(entry: dict[str, Any]) -> Charge | None:
    detail = entry.get("detail") or {}
    unit, amount = ((RHO, detail.get("rho")) if detail.get("accounting") == "zcdp"
                    else (EPSILON, entry["epsilon"]))
    if not (amount and entry["dataset"] and entry["actor"]):
        return None
    return Charge(datetime.fromisoformat(entry["at"]), entry["dataset"], entry["actor"],
                  Decimal(str(amount)), unit)


def _nice_ceiling(value: float) -> float:
    """The axis' top: 1, 2, 2.5 or 5 times a power of ten, at least ``value`` (rho is often
    a few thousandths, epsilon a few units)."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if step * factor >= value * (1 - 1e-9):
            return float(f"{step * factor:.12g}")
    return value


RANGES = {"1d": N_("last 24 hours"), "7d": N_("last 7 days"), "30d": N_("last 30 days"),
          "all": N_("all time")}
RANGE_DAYS = {"1d": 1, "7d": 7, "30d": 30}


def range_start(key: str, moment: datetime) -> datetime | None:
    return moment - timedelta(days=RANGE_DAYS[key]) if key in RANGE_DAYS else None


def chart(key: str, title: str, items: list[Charge], by: str, *,
          limits: dict[str, Decimal], since: datetime | None = None,
          unit: str = EPSILON) -> Chart:
    """Cumulative loss in ``unit`` per ``by`` (all charges count), drawn from ``since`` on,
    with each series' limit (a dataset's cap, an analyst's granted total) as a dashed line."""
    out = Chart(key=key, title=title, description="", kind=by, unit=unit)
    shown_items = [i for i in items if since is None or i.at >= since]
    if not shown_items:
        out.description = _("No privacy budget was charged in this time range.")
        return out
    start = since.timestamp() if since else shown_items[0].at.timestamp()
    end = max(shown_items[-1].at.timestamp(), start + 60)
    totals: dict[str, Decimal] = {}
    counts: dict[str, int] = {}
    for item in items:
        name = getattr(item, by)
        totals[name] = totals.get(name, Decimal(0)) + item.amount
        counts[name] = counts.get(name, 0) + 1
    active = {getattr(i, by) for i in shown_items}
    names = sorted(active, key=lambda n: (-totals[n], n))
    out.rows = [(n, totals[n], counts[n], limits.get(n)) for n in names]
    shown, out.hidden_series = names[:MAX_SERIES], max(0, len(names) - MAX_SERIES)
    highest = max([totals[n] for n in shown] + [limits[n] for n in shown if n in limits])
    top = _nice_ceiling(float(highest))

    def x(moment: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (moment - start) / (end - start), 1)

    def y(value: Decimal) -> float:
        return round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * float(value) / top, 1)

    for index, name in enumerate(shown):
        mine = [i for i in items if getattr(i, by) == name]
        running = sum((i.amount for i in mine if since and i.at < since), Decimal(0))
        points = [f"{x(start)},{y(running)}"]
        for item in (i for i in mine if since is None or i.at >= since):
            px = x(item.at.timestamp())
            points.append(f"{px},{y(running)}")
            running += item.amount
            points.append(f"{px},{y(running)}")
        points.append(f"{x(end)},{y(running)}")
        limit = limits.get(name)
        out.series.append(Series(name, COLOURS[index], DASHES[index], " ".join(points),
                                 running, len(mine), limit, y(limit) if limit else None))
    out.y_ticks = [(y(Decimal(str(top * k / 4))), f"{top * k / 4:.3g}") for k in range(5)]
    span = end - start
    fmt = "%H:%M:%S" if span < 3 * 3600 else "%m-%d %H:%M" if span < 4 * 86400 else "%Y-%m-%d"
    zone = shown_items[0].at.tzinfo
    out.x_ticks = [(x(start + span * k / 3),
                    datetime.fromtimestamp(start + span * k / 3, tz=zone).strftime(fmt))
                   for k in range(4)]
    out.description = _("Cumulative %(unit)s charged, %(start)s to %(end)s UTC; the largest is "
                        "%(name)s with %(total)s. Dashed lines: each one's limit.") % {
        "unit": unit, "start": datetime.fromtimestamp(start, tz=zone).strftime("%Y-%m-%d %H:%M"),
        "end": shown_items[-1].at.strftime("%Y-%m-%d %H:%M"), "name": shown[0],
        "total": f"{totals[shown[0]]:f}"}
    return out


TITLES = {
    (EPSILON, "dataset"): N_("Epsilon spent per dataset"),
    (EPSILON, "analyst"): N_("Epsilon spent per analyst"),
    (RHO, "dataset"): N_("Rho spent per dataset (zCDP)"),
    (RHO, "analyst"): N_("Rho spent per analyst (zCDP datasets)"),
}


def spend_charts(audit: AuditLog, *, caps: dict[str, dict[str, Decimal]],
                 granted: dict[str, dict[str, Decimal]], time_range: str = "all"
                 ) -> dict[str, Any]:
    """The charts of each unit (``caps``/``granted``: the limits per unit, then per dataset
    or analyst); epsilon's always, rho's when a dataset charges in rho."""
    items = charges(audit)
    since = range_start(time_range, datetime.now(UTC))
    shown = []
    for unit in (EPSILON, RHO):
        mine = [i for i in items if i.unit == unit]
        if unit == RHO and not (mine or caps.get(RHO)):
            continue
        for by, limits in (("dataset", caps), ("analyst", granted)):
            key = by if unit == EPSILON else f"{by}-{unit}"
            shown.append(chart(key, _(TITLES[unit, by]), mine, by,
                               limits=limits.get(unit, {}), since=since, unit=unit))
    return {"all": shown, "charges": len(items), "range": time_range}
