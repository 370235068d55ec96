"""The business calendar behind every SLA deadline (DESIGN.md §5): the one place callers import
it from. Pure: no database, no clock.

The work is done in three rooms:
- `calendar_file`: schedules/calendar.toml read and checked (CalendarError names the mistake);
- `calendar_days`: what one local date is (hours, holiday, closure, extra day);
- `business_time`: `BusinessCalendar`, deadlines and explanations in business minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from mailflow.sla.business_time import BusinessCalendar, Segment
from mailflow.sla.calendar_days import Closed
from mailflow.sla.calendar_file import (
    DEFAULT_DEFINITION,
    CalendarError,
    parse_definition,
    read_calendar_file,
)

__all__ = [
    "BusinessCalendar",
    "CalendarError",
    "Closed",
    "DEFAULT_DEFINITION",
    "Segment",
    "calendar_from_mapping",
    "default_calendar",
    "load_calendar",
]


def calendar_from_mapping(data: Mapping[str, Any], source: str = "<calendar>") -> BusinessCalendar:
    """A calendar from an already-parsed TOML-like mapping (`source` names it in errors)."""
    return BusinessCalendar(parse_definition(data, source))


def load_calendar(path: Path) -> BusinessCalendar:
    """Read a calendar file (see schedules/calendar.toml); CalendarError when it is bad."""
    return BusinessCalendar(read_calendar_file(path))


@lru_cache(maxsize=1)
def default_calendar() -> BusinessCalendar:
    """The built-in calendar, equivalent to schedules/calendar.toml (shared instance)."""
    return calendar_from_mapping(DEFAULT_DEFINITION, "<built-in calendar>")
