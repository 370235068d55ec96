"""Deadlines in words, for emails and the command line: "by 11:40 ET today"."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def clock_time(at: datetime, zone: ZoneInfo) -> str:
    """ "9:05 ET", "14:30 ET": no leading zero, which reads oddly in a sentence."""
    local = at.astimezone(zone)
    return f"{local.hour}:{local:%M} ET"


def when_in_words(at: datetime, now: datetime, zone: ZoneInfo) -> str:
    """ "9:00 ET today", "9:00 ET tomorrow (Tuesday)", "9:00 ET Monday", "9:00 ET on Mon ..."."""
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    days = (local.date() - today).days
    time_text = clock_time(at, zone)
    if days == 0:
        return f"{time_text} today"
    if days == 1:
        return f"{time_text} tomorrow ({local:%A})"
    if 1 < days < 7:
        return f"{time_text} {local:%A}"
    return f"{time_text} on {local:%a %-d %b %Y}"


def deadline_in_words(deadline: datetime, now: datetime, zone: ZoneInfo) -> str:
    return f"by {when_in_words(deadline, now, zone)}"


def working_hours_in_words(minutes: float) -> str:
    """A review target as a provider says it: "2 working hours", "1 working hour", "90
    working minutes" (never "business minutes")."""
    if minutes % 60 == 0:
        hours = int(minutes // 60)
        return f"{hours} working hour{'s' if hours != 1 else ''}"
    return f"{minutes:g} working minutes"
