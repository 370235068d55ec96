"""The business calendar behind every SLA deadline (DESIGN.md §5). Pure: no database, no clock.

A calendar is a time zone, weekly opening hours (several ranges a day allowed), public holidays
from the `holidays` package, and dated exceptions: closures (a whole day closed, or a short day)
and extra days (open on a day that would be closed). It is read from `schedules/calendar.toml`
(`load_calendar`) or built in (`default_calendar`, the same definition).

Business minutes are *real elapsed minutes* inside open hours: an open range that spans a
daylight-saving change counts the minutes that actually pass (01:00-04:00 local is 120 minutes
on the spring-forward day and 240 on the fall-back day). Open ranges are half-open: a calendar
open 09:00-17:00 is open at 09:00 and closed at 17:00, and a deadline that uses the last
business minute of the day is 17:00 that day, not 09:00 the next morning. Adding 0 minutes to a
time outside hours gives the next opening: the clock starts there.

Speed: each local date's open intervals are computed once (zoneinfo is used only then) and
flattened, for the whole years loaded so far, into sorted arrays of UTC epoch microseconds
with a running total of business microseconds. A deadline is then two binary searches and
integer arithmetic: about 2 µs, against about 0.5 µs for a plain `start + timedelta(...)`.
Years are loaded lazily, on first use, and kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import tomllib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

__all__ = [
    "BusinessCalendar",
    "CalendarError",
    "Closed",
    "DEFAULT_DEFINITION",
    "Segment",
    "default_calendar",
    "load_calendar",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_US_PER_MIN = 60_000_000
# Within this (1843-2096) a float of epoch seconds still resolves microseconds exactly.
_FAST_FROMTS_LIMIT = 4_000_000_000_000_000
_MAX_MINUTES = 1e12  # ~ 2 million years of minutes: rejects nonsense before it loops
_MAX_SPAN_YEARS = 40  # a table spanning more is rebuilt around the year asked for
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

COUNTED = "business hours"
OUTSIDE_HOURS = "outside hours"
WEEKEND = "weekend"

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


@dataclass(frozen=True)
class Closed:
    """Why a day that would normally be open is closed (a holiday or a closure)."""

    date: date
    name: str


class Segment(NamedTuple):
    """One step of an explanation: business time counted, or a gap skipped and why.

    Times are in the calendar's zone. `minutes` is the business time counted (real minutes);
    it is 0 for a gap, whose `note` gives the reason ("weekend", "outside hours",
    "Thanksgiving Day (holiday)", "closure: ...").
    """

    start: datetime
    end: datetime
    minutes: float
    note: str

    @property
    def counted(self) -> bool:
        return self.minutes > 0

    def describe(self) -> str:
        """One line for a terminal, e.g.
        "Wed 2026-11-25 16:00 -> Wed 2026-11-25 17:00 EST   60 min  business hours"."""
        start = self.start.strftime("%a %Y-%m-%d %H:%M")
        end = self.end.strftime("%a %Y-%m-%d %H:%M %Z")
        counted = f"{self.minutes:g} min" if self.minutes else "-"
        return f"{start} -> {end}  {counted:>8}  {self.note}"


# ---------------------------------------------------------------------------------------------
# Definition (parsed and validated)


Range = tuple[int, int]  # minutes after local midnight, end exclusive, end <= 1440


@dataclass(frozen=True)
class _Exception:
    day: date
    name: str
    hours: tuple[Range, ...] | None  # None: closed all day (closures only)


@dataclass(frozen=True)
class _Definition:
    timezone: str
    weekly: tuple[tuple[Range, ...], ...]  # index 0 = Monday
    country: str | None
    subdiv: str | None
    categories: tuple[str, ...] | None
    closures: Mapping[date, _Exception]
    extra_days: Mapping[date, _Exception]

    def canonical(self) -> dict[str, Any]:
        def fmt(ranges: Iterable[Range] | None) -> list[str] | None:
            return None if ranges is None else [_fmt_range(r) for r in ranges]

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


def _fmt_minute(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def _fmt_range(r: Range) -> str:
    return f"{_fmt_minute(r[0])}-{_fmt_minute(r[1])}"


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
                f"{where}: ranges {_fmt_range(merged[-1])} and {_fmt_range((start, end))} overlap"
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
) -> dict[date, _Exception]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise CalendarError(f"{src}: {key}: expected [[{key}]] entries")
    found: dict[date, _Exception] = {}
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
        found[day] = _Exception(day, name.strip(), hours)
    return found


def _parse_definition(data: Mapping[str, Any], src: str) -> _Definition:
    _check_keys(data, ("timezone", "hours", "holidays", "closure", "extra_day"), src)
    tz_name = data.get("timezone")
    if not isinstance(tz_name, str) or not tz_name:
        raise CalendarError(f'{src}: timezone is missing (e.g. timezone = "America/New_York")')
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(f"{src}: timezone: unknown time zone {tz_name!r}") from exc

    hours = data.get("hours")
    if not isinstance(hours, dict):
        raise CalendarError(f'{src}: [hours] is missing (mon = ["09:00-17:00"], ...)')
    _check_keys(hours, WEEKDAYS, f"{src}: [hours]")
    weekly = tuple(_parse_ranges(hours.get(day, []), f"{src}: [hours] {day}") for day in WEEKDAYS)

    country = subdiv = None
    categories: tuple[str, ...] | None = None
    hol = data.get("holidays")
    if hol is not None:
        where = f"{src}: [holidays]"
        if not isinstance(hol, dict):
            raise CalendarError(f"{where}: expected a table")
        _check_keys(hol, ("country", "subdiv", "categories"), where)
        country = hol.get("country")
        if not isinstance(country, str) or not country:
            raise CalendarError(f'{where}: country is missing (e.g. country = "US")')
        subdiv = hol.get("subdiv")
        if subdiv is not None and not isinstance(subdiv, str):
            raise CalendarError(f'{where}: subdiv: expected a string like "NY"')
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

    closures = _parse_exceptions(data.get("closure"), "closure", src, hours_required=False)
    extra = _parse_exceptions(data.get("extra_day"), "extra_day", src, hours_required=True)
    both = sorted(set(closures) & set(extra))
    if both:
        raise CalendarError(
            f"{src}: {both[0].isoformat()} is both a [[closure]] and an [[extra_day]]"
        )
    if not any(weekly) and not extra:
        raise CalendarError(f"{src}: [hours]: the calendar is never open")
    return _Definition(tz_name, weekly, country, subdiv, categories, closures, extra)


# ---------------------------------------------------------------------------------------------
# Days and the flattened table


@dataclass(frozen=True)
class _Day:
    intervals: tuple[tuple[int, int], ...]  # epoch µs, half-open, sorted, within the local day
    gap_note: str  # why time outside the intervals (or the whole day) is not counted
    count_note: str  # note for counted time
    closed: Closed | None  # a normally open day closed all day (or a short day)


class _Table(NamedTuple):
    first_year: int
    last_year: int
    lo: int  # epoch µs of local 1 January first_year 00:00
    hi: int  # epoch µs of local 1 January (last_year + 1) 00:00
    starts: list[int]
    ends: list[int]
    cum: list[int]  # business µs before each interval (from lo)
    cum_end: list[int]  # business µs up to the end of each interval


def _to_us(at: datetime) -> int:
    try:
        return (at - _EPOCH) // _US
    except TypeError:
        raise ValueError(f"naive datetime {at!r}: give a timezone-aware datetime") from None


def _check_minutes(minutes: float) -> int:
    if not 0 <= minutes <= _MAX_MINUTES:
        raise ValueError(f"minutes must be a non-negative finite number, got {minutes!r}")
    return round(minutes * _US_PER_MIN)


class BusinessCalendar:
    """Opening hours in one time zone, with holidays and dated exceptions.

    Immutable in meaning; internally it caches days and years as they are first used
    (thread-safe). All datetimes given must be timezone-aware; results are in `timezone`.
    """

    timezone: ZoneInfo
    version: str

    def __init__(self, definition: _Definition) -> None:
        self._def = definition
        self.timezone = ZoneInfo(definition.timezone)
        blob = json.dumps(definition.canonical(), sort_keys=True, separators=(",", ":"))
        self.version = hashlib.sha256(blob.encode()).hexdigest()[:12]
        self._days: dict[date, _Day] = {}
        self._holidays: dict[int, dict[date, str]] = {}
        self._lock = threading.Lock()
        self._table = _Table(0, -1, 0, 0, [], [], [], [])
        self._last_open_year = None if any(definition.weekly) else max(definition.extra_days).year

    def __repr__(self) -> str:
        return f"<BusinessCalendar {self._def.timezone} version={self.version}>"

    # -- public API ----------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        t = _to_us(at)
        tab = self._covering(t)
        i = bisect_right(tab.ends, t)
        return i < len(tab.starts) and tab.starts[i] <= t

    def next_opening(self, at: datetime) -> datetime:
        """`at` itself (in the calendar's zone) when open, else the start of the next opening."""
        t = _to_us(at)
        tab, i = self._after(t)
        return self._dt(max(t, tab.starts[i]))

    def add_business_minutes(self, start: datetime, minutes: float) -> datetime:
        """The instant `minutes` business minutes after `start` (clock starts at next opening).

        A deadline that uses the last business minute of a day is that day's closing time."""
        t = _to_us(start)
        if not 0 <= minutes <= _MAX_MINUTES:
            raise ValueError(f"minutes must be a non-negative finite number, got {minutes!r}")
        d = round(minutes * _US_PER_MIN)
        tab = self._table
        q: int | None = None
        if tab.lo <= t < tab.hi:
            i = bisect_right(tab.ends, t)
            if i < len(tab.ends):
                s = tab.starts[i]
                if d == 0:
                    q = s if s > t else t
                else:
                    p = tab.cum[i] + (t - s if t > s else 0) + d
                    cum_end = tab.cum_end
                    if p <= cum_end[-1]:
                        j = bisect_left(cum_end, p)
                        q = tab.starts[j] + p - tab.cum[j]
        if q is None:
            q = self._add_slow(t, d)
        if -_FAST_FROMTS_LIMIT < q < _FAST_FROMTS_LIMIT:
            return datetime.fromtimestamp(q / 1e6, self.timezone)
        return self._dt(q)

    def business_minutes_between(self, a: datetime, b: datetime) -> float:
        """Business minutes (real minutes within open hours) from `a` to `b`; 0 if b <= a."""
        ta, tb = _to_us(a), _to_us(b)
        if tb <= ta:
            return 0.0
        tab, _ = self._after(ta)
        while bisect_right(tab.ends, tb) == len(tab.ends):
            tab = self._grow(tab)
        return (_position(tab, tb) - _position(tab, ta)) / _US_PER_MIN

    def explain(self, start: datetime, minutes: float) -> list[Segment]:
        """How `add_business_minutes(start, minutes)` is reached: counted time and gaps.

        The last segment ends at the deadline (no segments: the deadline is `start`).
        Gaps are split by reason, each local day or run of days closed for one reason once.
        """
        t = _to_us(start)
        remaining = _check_minutes(minutes)
        out: list[Segment] = []
        while True:
            tab, i = self._after(t)
            s, e = tab.starts[i], tab.ends[i]
            if s > t:
                self._gap_segments(t, s, out)
                t = s
            if remaining == 0:
                break
            take = min(remaining, e - t)
            self._counted_segments(t, t + take, out)
            t += take
            remaining -= take
            if remaining == 0:
                break
        return out

    def closed_days(self, a: date, b: date) -> list[Closed]:
        """Days from `a` to `b` inclusive that would normally be open but are closed (holidays,
        closures) or shortened (closures with hours), in date order."""
        found = []
        day = a
        while day <= b:
            info = self._day(day)
            if info.closed is not None:
                found.append(info.closed)
            day += timedelta(days=1)
        return found

    def hours_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open intervals of a local date, as aware datetimes in the calendar's zone."""
        return [(self._dt(s), self._dt(e)) for s, e in self._day(day).intervals]

    # -- days ------------------------------------------------------------------------------

    def _holiday_names(self, year: int) -> dict[date, str]:
        names = self._holidays.get(year)
        if names is None:
            names = {}
            if self._def.country is not None:
                found = holidays_pkg.country_holidays(
                    self._def.country,
                    subdiv=self._def.subdiv,
                    categories=self._def.categories,
                    years=[year - 1, year, year + 1],
                )
                names = {d: n for d, n in found.items() if d.year == year}
            self._holidays[year] = names
        return names

    def _day(self, day: date) -> _Day:
        info = self._days.get(day)
        if info is None:
            info = self._compute_day(day)
            self._days[day] = info
        return info

    def _compute_day(self, day: date) -> _Day:
        d = self._def
        weekly = d.weekly[day.weekday()]
        extra = d.extra_days.get(day)
        closure = d.closures.get(day)
        holiday = self._holiday_names(day.year).get(day)
        if weekly:
            gap_note = OUTSIDE_HOURS
        elif day.weekday() >= 5:
            gap_note = WEEKEND
        else:
            gap_note = f"closed on {_DAY_NAMES[day.weekday()]}s"
        count_note = COUNTED
        closed = None
        hours = weekly
        if extra is not None:
            hours = extra.hours or ()
            gap_note, count_note = OUTSIDE_HOURS, f"{COUNTED} (extra day: {extra.name})"
        elif closure is not None:
            if closure.hours is None:
                hours = ()
                gap_note = f"closure: {closure.name}"
                if weekly:
                    closed = Closed(day, closure.name)
            else:
                hours = closure.hours
                short = ", ".join(_fmt_range(r) for r in hours)
                gap_note = f"closure: {closure.name} (open {short} only)"
                count_note = f"{COUNTED} (short day: {closure.name})"
                closed = Closed(day, f"{closure.name} (open {short} only)")
        elif holiday is not None and weekly:
            hours = ()
            gap_note = f"{holiday} (holiday)"
            closed = Closed(day, holiday)
        intervals = tuple(
            (self._local_us(day, start), self._local_us(day, end)) for start, end in hours
        )
        # A range wholly inside a spring-forward gap has no real time: drop it.
        intervals = tuple((s, e) for s, e in intervals if e > s)
        return _Day(intervals, gap_note, count_note, closed)

    def _local_us(self, day: date, minute: int) -> int:
        if minute >= 1440:
            at = datetime.combine(day + timedelta(days=1), time(), self.timezone)
        else:
            at = datetime.combine(day, time(minute // 60, minute % 60), self.timezone)
        # fold=0: a time repeated at fall-back is its first occurrence; a time skipped at
        # spring-forward is read with the offset before the change (02:30 -> 03:30 daylight).
        return (at - _EPOCH) // _US

    def _day_of(self, t: int) -> date:
        return self._dt(t).date()

    def _dt(self, t: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=t)).astimezone(self.timezone)

    # -- the table -----------------------------------------------------------------------

    def _covering(self, t: int) -> _Table:
        """A table whose year range contains instant `t` (a superset of the current one, or,
        for a year far from it, just that year)."""
        tab = self._table
        if tab.lo <= t < tab.hi:
            return tab
        year = self._day_of(t).year
        with self._lock:
            tab = self._table
            if tab.lo <= t < tab.hi:
                return tab
            first, last = min(year, tab.first_year), max(year, tab.last_year)
            if tab.last_year < tab.first_year or last - first > _MAX_SPAN_YEARS:
                first = last = year
            return self._build(first, last)

    def _after(self, t: int) -> tuple[_Table, int]:
        """A table and index of the first interval ending after `t` (open at or after `t`)."""
        tab = self._covering(t)
        i = bisect_right(tab.ends, t)
        while i == len(tab.ends):
            tab = self._grow(tab)
            i = bisect_right(tab.ends, t)
        return tab, i

    def _grow(self, tab: _Table) -> _Table:
        """`tab`'s years and more after them (doubling); error if never open again."""
        last = self._last_open_year
        if last is not None and tab.last_year >= last:
            raise ValueError(
                f"the calendar has no opening after {last} (no weekly hours, and no "
                "[[extra_day]] later than that)"
            )
        span = tab.last_year - tab.first_year + 1
        new_last = min(tab.last_year + max(1, span), 9998)
        if new_last <= tab.last_year:
            raise ValueError("deadline beyond the year 9998")
        with self._lock:
            current = self._table
            if current.first_year == tab.first_year and current.last_year >= new_last:
                return current
            return self._build(tab.first_year, new_last)

    def _build(self, first_year: int, last_year: int) -> _Table:
        """Flatten the days of the years given (merging touching intervals); caller locks."""
        if first_year < 1 or last_year > 9998:
            raise ValueError("date outside the calendar's range (years 1-9998)")
        starts: list[int] = []
        ends: list[int] = []
        day = date(first_year, 1, 1)
        stop = date(last_year + 1, 1, 1)
        one = timedelta(days=1)
        while day < stop:
            for s, e in self._day(day).intervals:
                if ends and s <= ends[-1]:
                    ends[-1] = max(ends[-1], e)
                else:
                    starts.append(s)
                    ends.append(e)
            day += one
        cum: list[int] = []
        cum_end: list[int] = []
        total = 0
        for s, e in zip(starts, ends, strict=True):
            cum.append(total)
            total += e - s
            cum_end.append(total)
        lo = self._local_us(date(first_year, 1, 1), 0)
        hi = self._local_us(stop, 0)
        tab = _Table(first_year, last_year, lo, hi, starts, ends, cum, cum_end)
        self._table = tab
        return tab

    def _add_slow(self, t: int, d: int) -> int:
        tab, i = self._after(t)
        while True:
            s = tab.starts[i]
            if d == 0:
                return s if s > t else t
            p = tab.cum[i] + (t - s if t > s else 0) + d
            if p <= tab.cum_end[-1]:
                j = bisect_left(tab.cum_end, p)
                return tab.starts[j] + p - tab.cum[j]
            tab = self._grow(tab)
            i = bisect_right(tab.ends, t)

    # -- explanation -----------------------------------------------------------------------

    def _gap_segments(self, a: int, b: int, out: list[Segment]) -> None:
        """Append the gap [a, b) split by local day and reason (same reasons merged)."""
        t = a
        while t < b:
            local = self._dt(t)
            day = local.date()
            next_midnight = self._local_us(day + timedelta(days=1), 0)
            end = min(b, next_midnight)
            note = self._day(day).gap_note
            if out and out[-1].minutes == 0 and out[-1].note == note and _to_us(out[-1].end) == t:
                out[-1] = out[-1]._replace(end=self._dt(end))
            else:
                out.append(Segment(local, self._dt(end), 0.0, note))
            t = end

    def _counted_segments(self, a: int, b: int, out: list[Segment]) -> None:
        """Append counted time [a, b), one segment per local day (open ranges can touch
        across midnight and are merged in the table)."""
        t = a
        while t < b:
            day = self._day_of(t)
            end = min(b, self._local_us(day + timedelta(days=1), 0))
            out.append(
                Segment(
                    self._dt(t), self._dt(end), (end - t) / _US_PER_MIN, self._day(day).count_note
                )
            )
            t = end


def _position(tab: _Table, t: int) -> int:
    """Business µs from `tab`'s origin to `t`; `tab` must hold an interval ending after `t`."""
    i = bisect_right(tab.ends, t)
    s = tab.starts[i]
    return tab.cum[i] + (t - s if t > s else 0)


# ---------------------------------------------------------------------------------------------
# Loading


def calendar_from_mapping(data: Mapping[str, Any], source: str = "<calendar>") -> BusinessCalendar:
    """A calendar from an already-parsed TOML-like mapping (`source` names it in errors)."""
    return BusinessCalendar(_parse_definition(data, source))


def load_calendar(path: Path) -> BusinessCalendar:
    """Read a calendar file (see schedules/calendar.toml); CalendarError when it is bad."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(f"{path}: not valid TOML: {exc}") from exc
    return calendar_from_mapping(data, str(path))


@lru_cache(maxsize=1)
def default_calendar() -> BusinessCalendar:
    """The built-in calendar, equivalent to schedules/calendar.toml (shared instance)."""
    return calendar_from_mapping(DEFAULT_DEFINITION, "<built-in calendar>")
