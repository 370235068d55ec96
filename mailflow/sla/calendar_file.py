"""The calendar file (schedules/calendar.toml): read, checked and turned into a definition.

Every mistake in the file is a `CalendarError` whose message names the file, the key and the
entry, so whoever edits the schedule can fix it without reading code. Pure: no clock.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# The built-in calendar: keep in step with schedules/calendar.toml (a test compares them).
DEFAULT_DEFINITION: dict[str, Any] = {
    "timezone": "America/New_York",
    "hours": {
        "mon": ["09:00-17:00"],
        "tue": ["09:00-17:00"],
        "wed": ["09:00-17:00"],
        "thu": ["09:00-17:00"],
        "fri": ["09:00-17:00"],
    },
    "holidays": {"country": "US"},
    "closure": [{"date": "2026-12-24", "name": "Christmas Eve (clinic closed)"}],
}


class CalendarError(Exception):
    """A bad calendar definition; the message names the file, key and entry."""


Range = tuple[int, int]  # minutes after local midnight, end exclusive, end <= 1440


@dataclass(frozen=True)
class DayException:
    """A [[closure]] or [[extra_day]] entry: a date whose hours differ from the week's."""

    day: date
    name: str
    hours: tuple[Range, ...] | None  # None: closed all day (closures only)


@dataclass(frozen=True)
class CalendarDefinition:
    """A checked calendar file; `canonical()` is what the calendar's version is a hash of."""

    timezone: str
    weekly: tuple[tuple[Range, ...], ...]  # index 0 = Monday
    country: str | None
    subdiv: str | None
    categories: tuple[str, ...] | None
    closures: Mapping[date, DayException]
    extra_days: Mapping[date, DayException]

    def canonical(self) -> dict[str, Any]:
        def fmt(ranges: Iterable[Range] | None) -> list[str] | None:
            return None if ranges is None else [fmt_range(r) for r in ranges]

        return {
            "timezone": self.timezone,
            "hours": {WEEKDAYS[i]: fmt(r) for i, r in enumerate(self.weekly)},
            "holidays": None
            if self.country is None
            else {
                "country": self.country,
                "subdiv": self.subdiv,
                "categories": sorted(self.categories) if self.categories else None,
                "package": holidays_pkg.__version__,
            },
            "closure": [
                [d.isoformat(), e.name, fmt(e.hours)] for d, e in sorted(self.closures.items())
            ],
            "extra_day": [
                [d.isoformat(), e.name, fmt(e.hours)] for d, e in sorted(self.extra_days.items())
            ],
        }




def fmt_minute(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def fmt_range(r: Range) -> str:
    return f"{fmt_minute(r[0])}-{fmt_minute(r[1])}"


def _parse_ranges(value: object, where: str) -> tuple[Range, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise CalendarError(f'{where}: expected a list of "HH:MM-HH:MM" strings, got {value!r}')
    ranges: list[Range] = []
    for item in value:
        m = _RANGE.match(item) if isinstance(item, str) else None
        if m is None:
            raise CalendarError(f'{where}: {item!r} is not a range like "09:00-17:00"')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise CalendarError(f"{where}: {item!r} is not a valid time range (00:00-24:00)")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise CalendarError(
                f"{where}: {item!r} ends before it starts (a range cannot cross midnight: "
                'write "22:00-24:00" on one day and "00:00-06:00" on the next)'
            )
        ranges.append((start, end))
    ranges.sort()
    merged: list[Range] = []
    for start, end in ranges:
        if merged and start < merged[-1][1]:
            raise CalendarError(
                f"{where}: ranges {fmt_range(merged[-1])} and {fmt_range((start, end))} overlap"
            )
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def _parse_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(f"{where}: date: expected a date like 2026-12-24, got {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarError(f"{where}: date: expected a date like 2026-12-24, got {value!r}")


def _check_keys(table: Mapping[str, object], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise CalendarError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(allowed: {', '.join(allowed)})"
        )


def _parse_exceptions(
    value: object, key: str, src: str, *, hours_required: bool
) -> dict[date, DayException]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise CalendarError(f"{src}: {key}: expected [[{key}]] entries")
    found: dict[date, DayException] = {}
    for n, entry in enumerate(value, 1):
        where = f"{src}: [[{key}]] entry {n}"
        if not isinstance(entry, dict):
            raise CalendarError(f"{where}: expected a table with date, name and hours")
        if "date" not in entry:
            raise CalendarError(f"{where}: date is missing")
        day = _parse_date(entry["date"], where)
        where = f"{src}: [[{key}]] entry {n} ({day.isoformat()})"
        _check_keys(entry, ("date", "name", "hours"), where)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CalendarError(f"{where}: name is missing (it is shown to users)")
        if "hours" in entry:
            hours: tuple[Range, ...] | None = _parse_ranges(entry["hours"], f"{where}: hours")
            if not hours:
                raise CalendarError(f"{where}: hours is empty (leave it out to close all day)")
        elif hours_required:
            raise CalendarError(f"{where}: hours is missing (the hours it is open)")
        else:
            hours = None
        if day in found:
            raise CalendarError(f"{where}: {day.isoformat()} is listed twice in [[{key}]]")
        found[day] = DayException(day, name.strip(), hours)
    return found


HolidaySource = tuple[str | None, str | None, tuple[str, ...] | None]  # country, subdiv, categories


def parse_definition(data: Mapping[str, Any], src: str) -> CalendarDefinition:
    """Check a parsed calendar file; `src` names it in the errors."""
    _check_keys(data, ("timezone", "hours", "holidays", "closure", "extra_day"), src)
    tz_name = _parse_timezone(data.get("timezone"), src)
    hours = data.get("hours")
    if not isinstance(hours, dict):
        raise CalendarError(f'{src}: [hours] is missing (mon = ["09:00-17:00"], ...)')
    _check_keys(hours, WEEKDAYS, f"{src}: [hours]")
    weekly = tuple(_parse_ranges(hours.get(day, []), f"{src}: [hours] {day}") for day in WEEKDAYS)
    country, subdiv, categories = _parse_holidays(data.get("holidays"), f"{src}: [holidays]")
    closures = _parse_exceptions(data.get("closure"), "closure", src, hours_required=False)
    extra = _parse_exceptions(data.get("extra_day"), "extra_day", src, hours_required=True)
    both = sorted(set(closures) & set(extra))
    if both:
        raise CalendarError(
            f"{src}: {both[0].isoformat()} is both a [[closure]] and an [[extra_day]]"
        )
    if not any(weekly) and not extra:
        raise CalendarError(f"{src}: [hours]: the calendar is never open")
    return CalendarDefinition(tz_name, weekly, country, subdiv, categories, closures, extra)


def _parse_timezone(tz_name: object, src: str) -> str:
    if not isinstance(tz_name, str) or not tz_name:
        raise CalendarError(f'{src}: timezone is missing (e.g. timezone = "America/New_York")')
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(f"{src}: timezone: unknown time zone {tz_name!r}") from exc
    return tz_name


def _parse_holidays(hol: object, where: str) -> HolidaySource:
    """The [holidays] table: which country's (and region's) public holidays close the clinic."""
    if hol is None:
        return None, None, None
    if not isinstance(hol, dict):
        raise CalendarError(f"{where}: expected a table")
    _check_keys(hol, ("country", "subdiv", "categories"), where)
    country = hol.get("country")
    if not isinstance(country, str) or not country:
        raise CalendarError(f'{where}: country is missing (e.g. country = "US")')
    subdiv = hol.get("subdiv")
    if subdiv is not None and not isinstance(subdiv, str):
        raise CalendarError(f'{where}: subdiv: expected a string like "NY"')
    categories: tuple[str, ...] | None = None
    cats = hol.get("categories")
    if cats is not None:
        if isinstance(cats, str):
            cats = [cats]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats) or not cats:
            raise CalendarError(f'{where}: categories: expected a list like ["public"]')
        categories = tuple(cats)
    try:
        holidays_pkg.country_holidays(country, subdiv=subdiv, categories=categories, years=2026)
    except (NotImplementedError, ValueError, KeyError) as exc:
        raise CalendarError(f"{where}: {exc}") from exc
    return country, subdiv, categories


def read_calendar_file(path: Path) -> CalendarDefinition:
    """Read and check a calendar file (see schedules/calendar.toml)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(f"{path}: not valid TOML: {exc}") from exc
    return parse_definition(data, str(path))
