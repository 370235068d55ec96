"""Rate limits for the forms anyone may post (sign-up, forgot password) and for photo links
that do not open: so many per client address and per email address in a sliding hour,
counted in the database (web_rate_events)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailflow.db.access_models import WebRateEvent

WINDOW = timedelta(hours=1)


def take(session: Session, checks: Sequence[tuple[str, str, int]], now: datetime) -> bool:
    """One attempt under each (scope, key, limit): True, and counted, if every key is under its
    limit; else False and not counted (so a flood cannot keep an address blocked forever)."""
    session.execute(delete(WebRateEvent).where(WebRateEvent.at < now - WINDOW))
    for scope, key, limit in checks:
        used = session.scalar(select(func.count()).select_from(WebRateEvent).where(
            WebRateEvent.scope == scope, WebRateEvent.key == key,
            WebRateEvent.at >= now - WINDOW))
        if (used or 0) >= limit:
            return False
    session.add_all(WebRateEvent(scope=scope, key=key, at=now) for scope, key, _ in checks)
    return True
