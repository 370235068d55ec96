"""Business time: the arithmetic behind every SLA deadline (DESIGN.md §5). Pure: no database,
no clock.

A calendar is a time zone, weekly opening hours (several ranges a day allowed), public holidays
from the `holidays` package, and dated exceptions: closures (a whole day closed, or a short day)
and extra days (open on a day that would be closed). It is read from `schedules/calendar.toml`
(`calendar.load_calendar`) or built in (`calendar.default_calendar`, the same definition).

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
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from mailflow.sla.calendar_days import Closed, HolidayNames, day_rule
from mailflow.sla.calendar_file import CalendarDefinition

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_US_PER_MIN = 60_000_000
# Within this (1843-2096) a float of epoch seconds still resolves microseconds exactly.
_FAST_FROMTS_LIMIT = 4_000_000_000_000_000
_MAX_MINUTES = 1e12  # ~ 2 million years of minutes: rejects nonsense before it loops
_MAX_SPAN_YEARS = 40  # a table spanning more is rebuilt around the year asked for


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

    def __init__(self, definition: CalendarDefinition) -> None:
        self._def = definition
        self.timezone = ZoneInfo(definition.timezone)
        blob = json.dumps(definition.canonical(), sort_keys=True, separators=(",", ":"))
        self.version = hashlib.sha256(blob.encode()).hexdigest()[:12]
        self._days: dict[date, _Day] = {}
        self._holidays = HolidayNames(definition)
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

    def _day(self, day: date) -> _Day:
        info = self._days.get(day)
        if info is None:
            info = self._compute_day(day)
            self._days[day] = info
        return info

    def _compute_day(self, day: date) -> _Day:
        rule = day_rule(self._def, day, self._holidays.on(day))
        intervals = tuple(
            (self._local_us(day, start), self._local_us(day, end)) for start, end in rule.hours
        )
        # A range wholly inside a spring-forward gap has no real time: drop it.
        intervals = tuple((s, e) for s, e in intervals if e > s)
        return _Day(intervals, rule.gap_note, rule.count_note, rule.closed)

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
