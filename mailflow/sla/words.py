"""Deadlines in words, for emails and the command line: "by 11:40 ET today"."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def clock_time(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{local:%H:%M} ET"


def deadline_in_words(deadline: datetime, now: datetime, zone: ZoneInfo) -> str:
    local, today = deadline.astimezone(zone), now.astimezone(zone).date()
    days = (local.date() - today).days
    time_text = clock_time(deadline, zone)
    if days == 0:
        return f"by {time_text} today"
    if days == 1:
        return f"by {time_text} tomorrow ({local:%A})"
    if 1 < days < 7:
        return f"by {time_text} {local:%A}"
    return f"by {time_text} on {local:%a %-d %b %Y}"
