"""Properties of the business calendar (instants compared in UTC: aware datetimes sharing a
zone compare by wall clock), over the years 2024-2035 and several calendars
(the default, a lunch break, night hours across the DST changes, always open), and against a
simple day-by-day reference for the default calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.sla.calendar import (
    DEFAULT_DEFINITION,
    BusinessCalendar,
    calendar_from_mapping,
    default_calendar,
)

NY = ZoneInfo("America/New_York")
US = timedelta(microseconds=1)

CALENDARS: dict[str, BusinessCalendar] = {
    "default": default_calendar(),
    "lunch": calendar_from_mapping(
        {
            **DEFAULT_DEFINITION,
            "hours": {d: ["08:00-12:00", "13:00-17:30"] for d in ("mon", "tue", "wed", "thu")},
        }
    ),
    "nights": calendar_from_mapping(
        {
            "timezone": "America/New_York",
            "hours": {
                "sat": ["22:00-24:00"],
                "sun": ["00:00-04:00", "10:00-10:30"],
                "wed": ["01:30-02:30", "09:00-17:00"],
            },
            "holidays": {"country": "US"},
            "extra_day": [
                {"date": "2026-11-26", "name": "Thanksgiving shift", "hours": ["01:00-03:00"]}
            ],
        }
    ),
    "always": calendar_from_mapping(
        {
            "timezone": "America/New_York",
            "hours": {
                d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
        }
    ),
}

ZONES = st.sampled_from([NY, UTC, ZoneInfo("Europe/London"), ZoneInfo("America/Los_Angeles")])
instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2035, 12, 31), timezones=ZONES
)
# Whole minutes mostly (what the service uses), sometimes fractions down to the second.
minutes = st.one_of(
    st.sampled_from([0, 1, 60, 120, 480]),
    st.integers(0, 5000),
    st.integers(0, 300_000).map(lambda s: s / 60),
)
positive_minutes = minutes.filter(lambda m: m > 0)
calendars = st.sampled_from(sorted(CALENDARS))

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def utc(d: datetime) -> datetime:
    return d.astimezone(UTC)


@fast
@given(calendars, instants, minutes)
def test_deadline_never_before_start_and_in_the_calendar_zone(
    name: str, start: datetime, m: float
) -> None:
    cal = CALENDARS[name]
    got = cal.add_business_minutes(start, m)
    assert utc(got) >= utc(start)
    assert got.tzinfo is cal.timezone
    if m > 0:
        assert cal.is_open(got - US)  # the last business microsecond used was open
    else:
        assert utc(got) == utc(cal.next_opening(start))


@fast
@given(calendars, instants, instants, minutes)
def test_monotonic_in_the_start(name: str, a: datetime, b: datetime, m: float) -> None:
    cal = CALENDARS[name]
    a, b = sorted((a, b), key=utc)
    assert utc(cal.add_business_minutes(a, m)) <= utc(cal.add_business_minutes(b, m))


@fast
@given(calendars, instants, minutes, positive_minutes)
def test_adding_in_two_steps_is_adding_once(name: str, s: datetime, a: float, b: float) -> None:
    # b > 0: adding 0 to a deadline at closing time moves it to the next opening (by design).
    cal = CALENDARS[name]
    two_steps = cal.add_business_minutes(cal.add_business_minutes(s, a), b)
    once = cal.add_business_minutes(s, a + b)
    assert abs(utc(two_steps) - utc(once)) <= US


@fast
@given(calendars, instants, minutes)
def test_minutes_between_start_and_deadline(name: str, s: datetime, m: float) -> None:
    cal = CALENDARS[name]
    deadline = cal.add_business_minutes(s, m)
    assert abs(cal.business_minutes_between(s, deadline) - m) < 1e-6
    assert abs(cal.business_minutes_between(cal.next_opening(s), deadline) - m) < 1e-6
    assert cal.business_minutes_between(deadline, s) == 0


@fast
@given(calendars, instants, minutes)
def test_explain_adds_up(name: str, s: datetime, m: float) -> None:
    cal = CALENDARS[name]
    segments = cal.explain(s, m)
    deadline = cal.add_business_minutes(s, m)
    counted = [seg for seg in segments if seg.counted]
    assert abs(sum(seg.minutes for seg in counted) - m) < 1e-6
    if not segments:
        assert utc(deadline) == utc(s) and m == 0 and cal.is_open(s)
        return
    assert utc(segments[0].start) == utc(s) and utc(segments[-1].end) == utc(deadline)
    for before, after in zip(segments, segments[1:], strict=False):
        assert utc(before.end) == utc(after.start) and utc(before.start) < utc(before.end)
        assert (before.counted, before.note) != (after.counted, after.note) or before.counted
    for seg in segments:
        assert seg.start.tzinfo is cal.timezone and seg.end.tzinfo is cal.timezone
        if seg.counted:
            assert cal.is_open(seg.start) and cal.is_open(seg.end - US)
            real = (utc(seg.end) - utc(seg.start)) / timedelta(minutes=1)
            assert abs(seg.minutes - real) < 1e-9
        else:
            assert seg.minutes == 0 and seg.note
            assert not cal.is_open(seg.start) and not cal.is_open(seg.end - US)


@fast
@given(instants, st.integers(0, 3000))
def test_always_open_is_real_time(s: datetime, m: int) -> None:
    got = CALENDARS["always"].add_business_minutes(s, m)
    assert utc(got) == utc(s) + timedelta(minutes=m)


# --- a reference: the default calendar walked day by day ---------------------------------

_FEDERAL = holidays.US(years=range(2023, 2038))
_CLOSED = set(_FEDERAL) | {date(2026, 12, 24)}


def reference_add(start: datetime, minutes_: int) -> datetime:
    t = utc(start)
    left = timedelta(minutes=minutes_)
    day = start.astimezone(NY).date()
    while True:
        if day.weekday() < 5 and day not in _CLOSED:
            opens = utc(datetime.combine(day, time(9), NY))
            closes = utc(datetime.combine(day, time(17), NY))
            begin = max(opens, t)
            if begin < closes:
                if not left:
                    return begin
                if left <= closes - begin:
                    return begin + left
                left -= closes - begin
        day += timedelta(days=1)
        t = utc(datetime.combine(day, time(0), NY))


@settings(max_examples=300, deadline=None)
@given(instants, st.one_of(st.sampled_from([0, 60, 120]), st.integers(0, 3000)))
def test_default_calendar_matches_the_reference(s: datetime, m: int) -> None:
    got = default_calendar().add_business_minutes(s, m)
    assert utc(got) == reference_add(s, m)
