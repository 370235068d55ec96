"""The charts page: SLA compliance, turnaround, cases received, load; SVG made on the server
(no script, no library: bars are rectangles with their numbers beside them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, Consult, utcnow
from mailflow.sla.stats import percentile
from mailflow.web.deps import admin_page, web_app
from mailflow.web.pages.base import render_page
from mailflow.web.security import WebUser

router = APIRouter(include_in_schema=False)
DAYS = 30
WEEKS = 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: nothing to measure (drawn as a gap, not as zero)
    text: str
    warn: bool = False


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    bars: tuple[Bar, ...]
    maximum: float
    target: float | None = None  # a line across the chart, e.g. 95 % or 120 minutes
    empty: str = "nothing measured in this period"  # shown when no bar has a value


def _percent(met: int, measured: int) -> float | None:
    return 100.0 * met / measured if measured else None


def charts(app: App, session: Session) -> list[Chart]:
    zone = app.sla.calendar.timezone
    met_target = app.sla.policies.met_target_percent
    minutes_target = float(app.sla.policies.for_urgency("routine").target_minutes)
    today = utcnow().astimezone(zone).date()
    first_day = today - timedelta(days=DAYS - 1)
    first_week = today - timedelta(days=today.weekday() + 7 * (WEEKS - 1))
    rows = session.execute(
        select(Consult.created_at, Consult.sla_met, Case.sla_consumed_minutes)
        .join(Case, Case.id == Consult.case_id)
        .where(Consult.version == 1,
               Consult.created_at >= datetime.combine(min(first_day, first_week), time.min,
                                                      zone))
    ).all()
    by_day: dict[date, list[bool]] = defaultdict(list)
    by_week: dict[date, list[bool]] = defaultdict(list)
    minutes_by_week: dict[date, list[float]] = defaultdict(list)
    for at, met, minutes in rows:
        day = at.astimezone(zone).date()
        monday = day - timedelta(days=day.weekday())
        if met is not None:
            by_day[day].append(met)
            by_week[monday].append(met)
            minutes_by_week[monday].append(minutes)
    days = [first_day + timedelta(days=i) for i in range(DAYS)]
    weeks = [first_week + timedelta(weeks=i) for i in range(WEEKS)]

    def compliance(keys: list[date], groups: dict[date, list[bool]], fmt: str) -> tuple[Bar, ...]:
        bars = []
        for key in keys:
            values = groups.get(key, [])
            pct = _percent(sum(values), len(values))
            text = "-" if pct is None else f"{pct:.0f}% of {len(values)}"
            bars.append(Bar(key.strftime(fmt), pct, text, pct is not None and pct < met_target))
        return tuple(bars)

    p50, p90 = [], []
    for monday in weeks:
        values = minutes_by_week.get(monday, [])
        for bars_of, q in ((p50, 50), (p90, 90)):
            value = percentile(values, q)
            text = "-" if value is None else f"{value:.0f} min"
            bars_of.append(Bar(monday.strftime("%d %b"), value, text,
                               value is not None and value > minutes_target))
    # by the local (ET) date, as the other charts: the database's date() would be UTC's
    received: dict[date, int] = defaultdict(int)
    since = datetime.combine(first_day, time.min, zone)
    for (created,) in session.execute(select(Case.created_at).where(Case.created_at >= since)):
        received[created.astimezone(zone).date()] += 1
    per_day = [Bar(day.strftime("%d %b"), float(received[day]), str(received[day]))
               for day in days]
    load = session.execute(
        select(Account.name, func.count(Case.id))
        .join(Case, Case.assignee_id == Account.id)
        .where(Case.state.in_(CaseState.UNANSWERED))
        .group_by(Account.name).order_by(Account.name)
    ).all()
    load_bars = tuple(Bar(name, float(n), str(n)) for name, n in load)
    top = max([b.value or 0 for b in (*p50, *p90)] + [minutes_target])
    return [
        Chart("SLA met, by day (last 30 days)", "%", compliance(days, by_day, "%d %b"), 100,
              met_target, "no consult sent in the last 30 days"),
        Chart("SLA met, by week", "%", compliance(weeks, by_week, "%d %b"), 100, met_target,
              f"no consult sent in the last {WEEKS} weeks"),
        Chart("Business time to consult, p50 by week", " min", tuple(p50), top, minutes_target,
              f"no consult sent in the last {WEEKS} weeks"),
        Chart("Business time to consult, p90 by week", " min", tuple(p90), top, minutes_target,
              f"no consult sent in the last {WEEKS} weeks"),
        Chart("Cases received per day (last 30 days)", "", tuple(per_day),
              max([b.value or 0 for b in per_day] + [1]), None, "no case in the last 30 days"),
        Chart("Open cases per dermatologist", "", load_bars,
              max([b.value or 0 for b in load_bars] + [1])),
    ]


@router.get("/charts")
def charts_page(request: Request, user: Annotated[WebUser, Depends(admin_page)]) -> Response:
    with web_app(request).sessions() as session:
        data: list[Any] = charts(web_app(request), session)
    policies = web_app(request).sla.policies
    return render_page(request, "charts.html.j2", user, charts=data, nav="charts",
                       met_target=policies.met_target_percent,
                       minutes_target=policies.for_urgency("routine").target_minutes)
