"""Epsilon spent over time, per dataset and per analyst, drawn as server-side SVG.

The numbers come from the audit log's ``query.charge`` entries (each states the epsilon
charged, the dataset and the analyst charged); the template draws the geometry computed
here, and a table beside each chart gives the same totals for screen readers. Each series
has its limit as a dashed line: a dataset's cap, or the epsilon granted to an analyst.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.i18n import N_, _
from gateway.services.audit import MAX_PAGE, AuditFilter, AuditLog

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 44
MAX_SERIES = 8
# Okabe-Ito: distinguishable with the common colour-vision deficiencies; dashes help more.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "", "6 3", "2 3", "8 3 2 3")


@dataclass(frozen=True)
class Charge:
    at: datetime
    dataset: str
    analyst: str
    epsilon: Decimal


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
            if entry["epsilon"] and entry["dataset"] and entry["actor"]:
                yield Charge(datetime.fromisoformat(entry["at"]), entry["dataset"],
                             entry["actor"], Decimal(entry["epsilon"]))
        if number * MAX_PAGE >= total:
            return
        number += 1


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 2.5, 5, 10):
        if step * factor >= value:
            return step * factor
    return value


RANGES = {"1d": N_("last 24 hours"), "7d": N_("last 7 days"), "30d": N_("last 30 days"),
          "all": N_("all time")}
RANGE_DAYS = {"1d": 1, "7d": 7, "30d": 30}


def range_start(key: str, moment: datetime) -> datetime | None:
    return moment - timedelta(days=RANGE_DAYS[key]) if key in RANGE_DAYS else None


def chart(key: str, title: str, items: list[Charge], by: str, *,
          limits: dict[str, Decimal], since: datetime | None = None) -> Chart:
    """Cumulative epsilon per ``by`` (all charges count), drawn from ``since`` on, with each
    series' limit (a dataset's cap, an analyst's granted total) as a dashed line."""
    out = Chart(key=key, title=title, description="")
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
        totals[name] = totals.get(name, Decimal(0)) + item.epsilon
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
        running = sum((i.epsilon for i in mine if since and i.at < since), Decimal(0))
        points = [f"{x(start)},{y(running)}"]
        for item in (i for i in mine if since is None or i.at >= since):
            px = x(item.at.timestamp())
            points.append(f"{px},{y(running)}")
            running += item.epsilon
            points.append(f"{px},{y(running)}")
        points.append(f"{x(end)},{y(running)}")
        limit = limits.get(name)
        out.series.append(Series(name, COLOURS[index], DASHES[index], " ".join(points),
                                 running, len(mine), limit, y(limit) if limit else None))
    out.y_ticks = [(y(Decimal(str(top * k / 4))), f"{top * k / 4:g}") for k in range(5)]
    span = end - start
    fmt = "%H:%M:%S" if span < 3 * 3600 else "%m-%d %H:%M" if span < 4 * 86400 else "%Y-%m-%d"
    zone = shown_items[0].at.tzinfo
    out.x_ticks = [(x(start + span * k / 3),
                    datetime.fromtimestamp(start + span * k / 3, tz=zone).strftime(fmt))
                   for k in range(4)]
    out.description = _("Cumulative epsilon charged, %(start)s to %(end)s UTC; the largest is "
                        "%(name)s with %(total)s. Dashed lines: each one's limit.") % {
        "start": datetime.fromtimestamp(start, tz=zone).strftime("%Y-%m-%d %H:%M"),
        "end": shown_items[-1].at.strftime("%Y-%m-%d %H:%M"), "name": shown[0],
        "total": f"{totals[shown[0]]:f}"}
    return out


def spend_charts(audit: AuditLog, *, caps: dict[str, Decimal], granted: dict[str, Decimal],
                 time_range: str = "all") -> dict[str, Any]:
    items = charges(audit)
    since = range_start(time_range, datetime.now(UTC))
    return {
        "by_dataset": chart("dataset", _("Epsilon spent per dataset"), items, "dataset",
                            limits=caps, since=since),
        "by_analyst": chart("analyst", _("Epsilon spent per analyst"), items, "analyst",
                            limits=granted, since=since),
        "charges": len(items),
        "range": time_range,
    }
