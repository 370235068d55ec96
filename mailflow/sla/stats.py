"""SLA statistics: the report's figures (`mailflow sla report`; met %, turnaround, breaches by
dermatologist and week) and the percentile the charts page shares with it."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.db.models import Account, Case, Consult, SlaEvent


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (inclusive method); None when nothing was measured.

    A zero is a value: a consult answered at once counts like any other.
    """
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def sla_report(session: Session, zone: tzinfo, start: date | None,
               end: date | None) -> dict[str, Any]:
    """First consults answered from `start` to `end` (days in `zone`, both included; None:
    open-ended): overall, by dermatologist, by week (from its Monday)."""
    query = (
        select(Case, Consult, Account.email)
        .join(Consult, (Consult.case_id == Case.id) & (Consult.version == 1))
        .join(Account, Account.id == Consult.dermatologist_id)
    )
    rows = session.execute(query).all()
    breaches = set(
        session.execute(select(SlaEvent.case_id).where(SlaEvent.kind == "breach")).scalars()
    )
    picked = []
    for case, consult, derm in rows:
        day = consult.created_at.astimezone(zone).date()
        if (start and day < start) or (end and day > end):
            continue
        picked.append((case, consult, derm, day))

    def summary(items: list) -> dict[str, Any]:  # type: ignore[type-arg]
        measured = [c for c, _con, _d, _day in items if c.sla_met is not None]
        minutes = [c.sla_consumed_minutes for c in measured]
        met = sum(1 for c in measured if c.sla_met)
        return {
            "cases": len(items),
            "measured": len(measured),
            "met_percent": round(100 * met / len(measured), 1) if measured else None,
            "p50_minutes": percentile(minutes, 50),
            "p90_minutes": percentile(minutes, 90),
            "breaches": sum(1 for c, *_ in items if c.id in breaches),
        }

    by_derm: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    by_week: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for item in picked:
        by_derm[item[2]].append(item)
        monday = item[3] - timedelta(days=item[3].weekday())
        by_week[monday.isoformat()].append(item)
    return {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "overall": summary(picked),
        "by_dermatologist": {k: summary(v) for k, v in sorted(by_derm.items())},
        "by_week": {k: summary(v) for k, v in sorted(by_week.items())},
    }
