"""The business calendar: the promised examples, holidays, DST, exceptions and a bad file."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailflow.sla.calendar import (
    DEFAULT_DEFINITION,
    BusinessCalendar,
    CalendarError,
    Closed,
    calendar_from_mapping,
    default_calendar,
    load_calendar,
)

ROOT = Path(__file__).resolve().parents[3]
NY = ZoneInfo("America/New_York")
CAL = default_calendar()


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NY, fold=fold)  # type: ignore[arg-type]


def add(start: datetime, minutes: float, cal: BusinessCalendar = CAL) -> datetime:
    return cal.add_business_minutes(start, minutes)


def custom(**changes: Any) -> BusinessCalendar:
    data: dict[str, Any] = {**DEFAULT_DEFINITION, **changes}
    return calendar_from_mapping({k: v for k, v in data.items() if v is not None})


# --- the promised examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "deadline"),
    [
        (ny(2026, 3, 2, 16, 59), 120, ny(2026, 3, 3, 10, 59)),  # Mon 16:59 -> Tue 10:59
        (ny(2026, 3, 6, 16, 30), 120, ny(2026, 3, 9, 10, 30)),  # Fri -> Mon (and DST)
        (ny(2026, 10, 9, 16, 30), 120, ny(2026, 10, 13, 10, 30)),  # Fri -> Columbus Day -> Tue
        (ny(2026, 5, 16, 10, 0), 120, ny(2026, 5, 18, 11, 0)),  # Saturday 10:00 -> Mon 11:00
        (ny(2026, 5, 12, 8, 15), 120, ny(2026, 5, 12, 11, 0)),  # before opening
        (ny(2026, 11, 25, 16, 0), 120, ny(2026, 11, 27, 10, 0)),  # Thanksgiving
        (ny(2026, 5, 12, 15, 0), 120, ny(2026, 5, 12, 17, 0)),  # lands at closing: 17:00
        (ny(2026, 5, 12, 16, 0), 60, ny(2026, 5, 12, 17, 0)),  # urgent, lands at closing
        (ny(2026, 5, 12, 16, 30), 60, ny(2026, 5, 13, 9, 30)),  # urgent, overnight
        (ny(2026, 5, 12, 17, 0), 120, ny(2026, 5, 13, 11, 0)),  # at closing: tomorrow
        (ny(2026, 5, 12, 9, 0), 480, ny(2026, 5, 12, 17, 0)),  # a whole day
        (ny(2026, 5, 12, 9, 0), 481, ny(2026, 5, 13, 9, 1)),
        (ny(2026, 5, 12, 10, 0), 0.5, ny(2026, 5, 12, 10, 0, 30)),  # fractions of a minute
        (ny(2026, 12, 23, 16, 0), 120, ny(2026, 12, 28, 10, 0)),  # Christmas Eve closure
        (ny(2026, 12, 31, 16, 0), 120, ny(2027, 1, 4, 10, 0)),  # New Year, across years
        (ny(2026, 7, 2, 16, 0), 120, ny(2026, 7, 6, 10, 0)),  # Independence Day observed
    ],
)
def test_deadlines(start: datetime, minutes: float, deadline: datetime) -> None:
    got = add(start, minutes)
    assert got == deadline
    assert got.tzinfo is NY
    assert got.utcoffset() == deadline.utcoffset()
    assert CAL.business_minutes_between(start, got) == pytest.approx(minutes)


def test_zero_minutes_outside_hours_is_the_next_opening() -> None:
    assert add(ny(2026, 5, 12, 20, 0), 0) == ny(2026, 5, 13, 9, 0)
    assert add(ny(2026, 5, 12, 17, 0), 0) == ny(2026, 5, 13, 9, 0)
    assert add(ny(2026, 5, 16, 12, 0), 0) == ny(2026, 5, 18, 9, 0)
    assert add(ny(2026, 5, 12, 11, 7), 0) == ny(2026, 5, 12, 11, 7)


def test_results_are_in_the_calendar_zone_whatever_the_input_zone() -> None:
    start_utc = datetime(2026, 5, 12, 13, 0, tzinfo=UTC)  # 09:00 EDT
    got = add(start_utc, 120)
    assert got == ny(2026, 5, 12, 11, 0) and got.tzinfo is NY
    assert CAL.next_opening(start_utc).tzinfo is NY
    tokyo = start_utc.astimezone(ZoneInfo("Asia/Tokyo"))
    assert add(tokyo, 120) == got


def test_is_open_and_next_opening_at_the_edges() -> None:
    assert not CAL.is_open(ny(2026, 5, 12, 8, 59, 59))
    assert CAL.is_open(ny(2026, 5, 12, 9, 0))
    assert CAL.is_open(ny(2026, 5, 12, 16, 59, 59, 999999))
    assert not CAL.is_open(ny(2026, 5, 12, 17, 0))
    assert not CAL.is_open(ny(2026, 5, 16, 12, 0))  # Saturday
    assert not CAL.is_open(ny(2026, 11, 26, 12, 0))  # Thanksgiving
    assert CAL.is_open(ny(2026, 11, 27, 12, 0))  # the Friday after is not a federal holiday
    assert CAL.next_opening(ny(2026, 5, 12, 12, 0)) == ny(2026, 5, 12, 12, 0)
    assert CAL.next_opening(ny(2026, 5, 12, 17, 0)) == ny(2026, 5, 13, 9, 0)
    assert CAL.next_opening(ny(2026, 11, 25, 18, 0)) == ny(2026, 11, 27, 9, 0)


def test_business_minutes_between() -> None:
    assert CAL.business_minutes_between(ny(2026, 5, 15, 16, 0), ny(2026, 5, 18, 10, 0)) == 120
    assert CAL.business_minutes_between(ny(2026, 5, 18, 10, 0), ny(2026, 5, 15, 16, 0)) == 0
    assert CAL.business_minutes_between(ny(2026, 5, 16, 1, 0), ny(2026, 5, 17, 23, 0)) == 0
    week = CAL.business_minutes_between(ny(2026, 5, 11), ny(2026, 5, 18))
    assert week == 5 * 480
    # 2026: 261 weekdays, 11 federal holidays on weekdays, and the Christmas Eve closure.
    year = CAL.business_minutes_between(ny(2026, 1, 1), ny(2027, 1, 1))
    assert year == (261 - 11 - 1) * 480


# --- holidays ----------------------------------------------------------------------------

FEDERAL_2026 = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 1, 19): "Martin Luther King Jr. Day",
    date(2026, 2, 16): "Washington's Birthday",  # Presidents Day
    date(2026, 5, 25): "Memorial Day",
    date(2026, 6, 19): "Juneteenth National Independence Day",
    date(2026, 7, 3): "Independence Day (observed)",  # July 4th is a Saturday
    date(2026, 9, 7): "Labor Day",
    date(2026, 10, 12): "Columbus Day",
    date(2026, 11, 11): "Veterans Day",
    date(2026, 11, 26): "Thanksgiving Day",
    date(2026, 12, 25): "Christmas Day",
}


@pytest.mark.parametrize("day", sorted(FEDERAL_2026))
def test_federal_holidays_2026_are_closed(day: date) -> None:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=NY)
    assert not CAL.is_open(noon)
    assert CAL.next_opening(noon).date() > day
    explained = CAL.explain(noon, 60)
    assert f"{FEDERAL_2026[day]} (holiday)" in [s.note for s in explained]


def test_closed_days_2026_are_named() -> None:
    expected = [Closed(d, n) for d, n in FEDERAL_2026.items()]
    expected.append(Closed(date(2026, 12, 24), "Christmas Eve (clinic closed)"))
    assert CAL.closed_days(date(2026, 1, 1), date(2026, 12, 31)) == sorted(
        expected, key=lambda c: c.date
    )
    # inclusive at both ends; a holiday on a Saturday (July 4th) is not listed: never open
    assert CAL.closed_days(date(2026, 7, 3), date(2026, 7, 4)) == [
        Closed(date(2026, 7, 3), "Independence Day (observed)")
    ]
    assert CAL.closed_days(date(2026, 11, 27), date(2026, 11, 27)) == []
    assert CAL.closed_days(date(2026, 2, 1), date(2026, 1, 1)) == []


def test_holiday_observed_in_the_previous_year() -> None:
    # 1 January 2028 is a Saturday: observed on Friday 31 December 2027.
    assert not CAL.is_open(ny(2027, 12, 31, 12, 0))
    assert add(ny(2027, 12, 30, 16, 0), 120) == ny(2028, 1, 3, 10, 0)


def test_subdivision_holidays() -> None:
    ma = custom(holidays={"country": "US", "subdiv": "MA"})
    patriots_day = ny(2026, 4, 20, 12, 0)  # third Monday of April, Massachusetts
    assert not ma.is_open(patriots_day) and CAL.is_open(patriots_day)
    assert ma.version != CAL.version


def test_no_holidays_table_means_no_holidays() -> None:
    plain = custom(holidays=None, closure=None)
    assert plain.is_open(ny(2026, 11, 26, 12, 0))
    assert plain.closed_days(date(2026, 1, 1), date(2026, 12, 31)) == []


# --- daylight saving ---------------------------------------------------------------------


def test_default_calendar_across_dst_changes() -> None:
    spring = add(ny(2026, 3, 6, 16, 0), 120)
    assert spring == ny(2026, 3, 9, 10, 0) and spring.utcoffset() == timedelta(hours=-4)
    autumn = add(ny(2026, 10, 30, 16, 0), 120)
    assert autumn == ny(2026, 11, 2, 10, 0) and autumn.utcoffset() == timedelta(hours=-5)
    assert CAL.business_minutes_between(ny(2026, 3, 6, 9), ny(2026, 3, 10, 9)) == 2 * 480


@pytest.mark.parametrize(
    ("hours", "day", "minutes"),
    [
        ("01:00-04:00", date(2026, 3, 8), 120),  # spring forward: 02:00-03:00 does not exist
        ("01:00-04:00", date(2026, 11, 1), 240),  # fall back: 01:00-02:00 happens twice
        ("01:00-03:00", date(2026, 3, 8), 60),
        ("01:00-03:00", date(2026, 11, 1), 180),
        ("01:00-04:00", date(2026, 3, 15), 180),  # an ordinary Sunday
        ("00:00-24:00", date(2026, 3, 8), 23 * 60),
        ("00:00-24:00", date(2026, 11, 1), 25 * 60),
    ],
)
def test_business_minutes_are_real_minutes_across_dst(hours: str, day: date, minutes: int) -> None:
    cal = custom(hours={"sun": [hours]}, holidays=None, closure=None)
    midnight = datetime(day.year, day.month, day.day, tzinfo=NY)
    total = cal.business_minutes_between(midnight, midnight + timedelta(days=1, hours=1))
    assert total == minutes
    opening = cal.next_opening(midnight - timedelta(hours=2))
    deadline = add(opening, minutes, cal)
    assert deadline.astimezone(UTC) - opening.astimezone(UTC) == timedelta(minutes=minutes)
    assert cal.business_minutes_between(opening, add(opening, minutes, cal)) == minutes


def test_night_hours_on_the_dst_days() -> None:
    cal = custom(hours={"sun": ["01:00-04:00"]}, holidays=None, closure=None)
    # spring: 01:00 EST + 60 real minutes = 03:00 EDT
    got = add(ny(2026, 3, 8, 1, 0), 60, cal)
    assert got.astimezone(UTC) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert (got.hour, got.utcoffset()) == (3, timedelta(hours=-4))
    assert add(ny(2026, 3, 8, 1, 0), 120, cal).astimezone(UTC) == datetime(
        2026, 3, 8, 8, 0, tzinfo=UTC
    )  # 04:00 EDT, the close
    # autumn: 01:00 EDT + 60 real minutes = the second 01:00 (EST)
    second = add(ny(2026, 11, 1, 1, 0), 60, cal)
    assert second.astimezone(UTC) == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert (second.hour, second.fold, second.utcoffset()) == (1, 1, timedelta(hours=-5))
    assert cal.is_open(ny(2026, 11, 1, 1, 30, fold=1))
    assert add(ny(2026, 11, 1, 1, 0), 240, cal) == ny(2026, 11, 1, 4, 0)
    # the gap: 02:30 does not exist on 8 March; as an input it is read as 03:30 EDT
    assert cal.business_minutes_between(ny(2026, 3, 8, 2, 30), ny(2026, 3, 8, 4, 0)) == 30


def test_a_range_starting_in_the_spring_gap_opens_after_it() -> None:
    cal = custom(hours={"sun": ["02:30-05:00"]}, holidays=None, closure=None)
    assert cal.next_opening(ny(2026, 3, 8, 0, 0)).astimezone(UTC) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )  # 03:30 EDT
    day = cal.business_minutes_between(ny(2026, 3, 8), ny(2026, 3, 9))
    assert day == 90


# --- hours and exceptions ----------------------------------------------------------------


def test_several_ranges_a_day() -> None:
    cal = custom(hours={d: ["08:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed")})
    assert add(ny(2026, 5, 12, 11, 30), 60, cal) == ny(2026, 5, 12, 13, 30)
    assert add(ny(2026, 5, 12, 11, 0), 60, cal) == ny(2026, 5, 12, 12, 0)  # lands at lunch
    assert not cal.is_open(ny(2026, 5, 12, 12, 30))
    assert add(ny(2026, 5, 13, 16, 30), 60, cal) == ny(2026, 5, 18, 8, 30)  # Wed -> Mon
    notes = [s.note for s in cal.explain(ny(2026, 5, 12, 11, 30), 60)]
    assert notes == ["business hours", "outside hours", "business hours"]
    assert cal.closed_days(date(2026, 5, 14), date(2026, 5, 14)) == []  # Thursday: no hours
    gap = [s.note for s in cal.explain(ny(2026, 5, 13, 16, 30), 60)]
    assert "closed on Thursdays" in gap and "weekend" in gap


def test_touching_ranges_merge_and_midnight_ranges_join() -> None:
    cal = custom(
        hours={
            "mon": ["09:00-12:00", "12:00-17:00"],
            "fri": ["22:00-24:00"],
            "sat": ["00:00-02:00"],
        },
        holidays=None,
        closure=None,
    )
    assert cal.is_open(ny(2026, 5, 11, 12, 0))
    assert add(ny(2026, 5, 15, 23, 0), 120, cal) == ny(2026, 5, 16, 1, 0)
    assert add(ny(2026, 5, 15, 22, 0), 120, cal) == ny(2026, 5, 16, 0, 0)


def test_short_day_closure() -> None:
    cal = custom(
        closure=[{"date": "2026-12-31", "name": "New Year's Eve", "hours": ["09:00-12:00"]}]
    )
    assert add(ny(2026, 12, 31, 11, 0), 120, cal) == ny(2027, 1, 4, 10, 0)
    assert not cal.is_open(ny(2026, 12, 31, 13, 0))
    assert cal.closed_days(date(2026, 12, 31), date(2026, 12, 31)) == [
        Closed(date(2026, 12, 31), "New Year's Eve (open 09:00-12:00 only)")
    ]
    notes = [s.note for s in cal.explain(ny(2026, 12, 31, 11, 0), 120)]
    assert notes[0] == "business hours (short day: New Year's Eve)"
    assert notes[1] == "closure: New Year's Eve (open 09:00-12:00 only)"
    assert "New Year's Day (holiday)" in notes


def test_extra_day_opens_a_weekend_or_a_holiday() -> None:
    cal = custom(
        extra_day=[
            {"date": "2026-05-16", "name": "Saturday clinic", "hours": ["10:00-12:00"]},
            {"date": date(2026, 10, 12), "name": "Open on Columbus Day", "hours": ["09:00-17:00"]},
        ]
    )
    assert add(ny(2026, 5, 15, 16, 30), 120, cal) == ny(2026, 5, 16, 11, 30)
    assert cal.is_open(ny(2026, 10, 12, 12, 0))
    assert all(
        c.date != date(2026, 10, 12) for c in cal.closed_days(date(2026, 10, 1), date(2026, 10, 31))
    )
    segs = cal.explain(ny(2026, 5, 15, 16, 30), 120)
    assert segs[-1].note == "business hours (extra day: Saturday clinic)"
    assert [h[0] for h in cal.hours_on(date(2026, 5, 16))] == [ny(2026, 5, 16, 10, 0)]


def test_only_extra_days_and_beyond_them() -> None:
    cal = custom(
        hours={},
        holidays=None,
        closure=None,
        extra_day=[{"date": "2026-06-06", "name": "Screening day", "hours": ["09:00-12:00"]}],
    )
    assert add(ny(2026, 1, 5, 9, 0), 60, cal) == ny(2026, 6, 6, 10, 0)
    with pytest.raises(ValueError, match="no opening after 2026"):
        add(ny(2026, 6, 6, 11, 0), 120, cal)
    with pytest.raises(ValueError, match="no opening"):
        cal.next_opening(ny(2026, 7, 1, 0, 0))


# --- explain -----------------------------------------------------------------------------


def test_explain_thanksgiving() -> None:
    segs = CAL.explain(ny(2026, 11, 25, 16, 0), 120)
    assert [(s.start, s.end, s.minutes, s.note) for s in segs] == [
        (ny(2026, 11, 25, 16), ny(2026, 11, 25, 17), 60.0, "business hours"),
        (ny(2026, 11, 25, 17), ny(2026, 11, 26, 0), 0.0, "outside hours"),
        (ny(2026, 11, 26, 0), ny(2026, 11, 27, 0), 0.0, "Thanksgiving Day (holiday)"),
        (ny(2026, 11, 27, 0), ny(2026, 11, 27, 9), 0.0, "outside hours"),
        (ny(2026, 11, 27, 9), ny(2026, 11, 27, 10), 60.0, "business hours"),
    ]
    assert all(s.start.tzinfo is NY for s in segs)
    assert segs[0].counted and not segs[1].counted
    assert "Thanksgiving Day (holiday)" in segs[2].describe()


def test_explain_weekend_and_overnight() -> None:
    segs = CAL.explain(ny(2026, 12, 23, 16, 0), 120)
    assert [s.note for s in segs] == [
        "business hours",
        "outside hours",
        "closure: Christmas Eve (clinic closed)",
        "Christmas Day (holiday)",
        "weekend",
        "outside hours",
        "business hours",
    ]
    assert segs[4].start == ny(2026, 12, 26) and segs[4].end == ny(2026, 12, 28)
    overnight = CAL.explain(ny(2026, 5, 12, 16, 30), 60)
    assert [(s.start, s.end, s.note) for s in overnight][1] == (
        ny(2026, 5, 12, 17),
        ny(2026, 5, 13, 9),
        "outside hours",
    )


def test_explain_zero_minutes_and_outside_hours() -> None:
    assert CAL.explain(ny(2026, 5, 12, 10, 0), 0) == []
    segs = CAL.explain(ny(2026, 5, 16, 10, 0), 0)
    assert [s.note for s in segs] == ["weekend", "outside hours"]
    assert segs[-1].end == ny(2026, 5, 18, 9, 0)


# --- input checks ------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 5, 12, 10, 0)
    for call in (
        lambda: CAL.is_open(naive),
        lambda: CAL.next_opening(naive),
        lambda: CAL.add_business_minutes(naive, 60),
        lambda: CAL.business_minutes_between(naive, ny(2026, 5, 13)),
        lambda: CAL.business_minutes_between(ny(2026, 5, 11), naive),
        lambda: CAL.explain(naive, 60),
    ):
        with pytest.raises(ValueError, match="naive"):
            call()


@pytest.mark.parametrize("minutes", [-1, -0.001, float("nan"), float("inf")])
def test_bad_minutes_are_refused(minutes: float) -> None:
    with pytest.raises(ValueError, match="minutes"):
        add(ny(2026, 5, 12, 10, 0), minutes)
    with pytest.raises(ValueError, match="minutes"):
        CAL.explain(ny(2026, 5, 12, 10, 0), minutes)


# --- the file ----------------------------------------------------------------------------


def test_the_shipped_file_is_the_default_calendar() -> None:
    shipped = load_calendar(ROOT / "schedules" / "calendar.toml")
    assert shipped.version == CAL.version
    assert str(shipped.timezone) == "America/New_York"
    assert shipped.closed_days(date(2026, 1, 1), date(2026, 12, 31)) == CAL.closed_days(
        date(2026, 1, 1), date(2026, 12, 31)
    )
    assert default_calendar() is CAL


def test_version_is_stable_and_follows_the_definition(tmp_path: Path) -> None:
    text = (ROOT / "schedules" / "calendar.toml").read_text(encoding="utf-8")
    path = tmp_path / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    first = load_calendar(path).version
    assert len(first) == 12 and load_calendar(path).version == first
    path.write_text("# a new comment\n" + text.replace('"2026-12-24"', "2026-12-24"), "utf-8")
    assert load_calendar(path).version == first  # comments and a TOML date: same definition
    path.write_text(text.replace('fri = ["09:00-17:00"]', 'fri = ["09:00-16:00"]'), "utf-8")
    assert load_calendar(path).version != first


def test_a_file_with_every_kind_of_entry(tmp_path: Path) -> None:
    path = tmp_path / "calendar.toml"
    path.write_text(
        """
timezone = "America/Chicago"
[hours]
mon = ["08:00-12:00", "13:00-17:00"]
sat = ["09:00-12:00"]
[holidays]
country = "US"
subdiv = "TX"
categories = ["public"]
[[closure]]
date = 2026-05-18
name = "Staff training"
[[extra_day]]
date = "2026-05-19"
name = "Tuesday clinic"
hours = ["10:00-11:00"]
""",
        encoding="utf-8",
    )
    cal = load_calendar(path)
    chicago = ZoneInfo("America/Chicago")
    assert cal.timezone == chicago
    got = cal.add_business_minutes(datetime(2026, 5, 16, 11, 0, tzinfo=chicago), 120)
    assert got == datetime(2026, 5, 19, 11, 0, tzinfo=chicago)  # Sat 1h, Mon closed, Tue 1h
    assert cal.closed_days(date(2026, 5, 18), date(2026, 5, 19)) == [
        Closed(date(2026, 5, 18), "Staff training")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timezone = 'Mars/Olympus'\n[hours]\nmon = ['09:00-17:00']", "timezone"),
        ("[hours]\nmon = ['09:00-17:00']", "timezone is missing"),
        ("timezone = 'America/New_York'", r"\[hours\] is missing"),
        ("timezone = 'America/New_York'\n[hours]\nmonday = ['09:00-17:00']", "monday"),
        ("timezone = 'America/New_York'\n[hours]\nmon = '09:00-17:00'", r"\[hours\] mon"),
        ("timezone = 'America/New_York'\n[hours]\nmon = ['9-5']", "'9-5'"),
        ("timezone = 'America/New_York'\n[hours]\nmon = ['17:00-09:00']", "cross midnight"),
        ("timezone = 'America/New_York'\n[hours]\nmon = ['09:00-25:00']", "not a valid"),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-13:00', '12:00-17:00']",
            "overlap",
        ),
        ("timezone = 'America/New_York'\n[hours]\n", "never open"),
        ("timezone = 'America/New_York'\nholiday = 1\n[hours]\nmon = ['09:00-17:00']", "holiday"),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[holidays]\ncountry = 'XX'",
            r"\[holidays\].*XX",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[holidays]\ncountry = 'US'\nsubdiv = 'ZZ'",
            "ZZ",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[holidays]\ncountry = 'US'\ncategories = ['bogus']",
            "bogus",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[closure]]\ndate = '2026-13-01'\nname = 'x'",
            r"\[\[closure\]\] entry 1: date",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[closure]]\ndate = '2026-12-24'",
            r"entry 1 \(2026-12-24\): name is missing",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[closure]]\ndate = '2026-12-24'\nname = 'a'\n[[closure]]\ndate = '2026-12-24'\n"
            "name = 'b'",
            r"entry 2 \(2026-12-24\): 2026-12-24 is listed twice",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[closure]]\ndate = '2026-12-24'\nname = 'a'\nhours = ['09:00-12:00']\nnote = 1",
            "unknown key note",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[extra_day]]\ndate = '2026-12-26'\nname = 'a'",
            r"\[\[extra_day\]\] entry 1 \(2026-12-26\): hours is missing",
        ),
        (
            "timezone = 'America/New_York'\n[hours]\nmon = ['09:00-17:00']\n"
            "[[closure]]\ndate = '2026-12-26'\nname = 'a'\n"
            "[[extra_day]]\ndate = '2026-12-26'\nname = 'b'\nhours = ['09:00-10:00']",
            "both",
        ),
        ("timezone = 'America/New_York\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarError, match=message) as caught:
        load_calendar(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read"):
        load_calendar(tmp_path / "nope.toml")


# --- years, threads, speed ---------------------------------------------------------------


def test_far_years_and_back() -> None:
    cal = custom()
    assert add(ny(2090, 11, 22, 16, 0), 120, cal) == ny(2090, 11, 24, 10, 0)  # Thanksgiving
    assert add(ny(2026, 11, 25, 16, 0), 120, cal) == ny(2026, 11, 27, 10, 0)
    assert add(ny(2090, 6, 2, 16, 0), 120, cal) == add(ny(2090, 6, 2, 16, 0), 120)
    year = 60 * 480 * 250
    far = add(ny(2026, 1, 5, 9, 0), year, cal)  # about 60 years of business hours
    assert cal.business_minutes_between(ny(2026, 1, 5, 9, 0), far) == year


def test_concurrent_first_use_agrees() -> None:
    starts = [ny(2024 + i % 12, 1 + i % 12, 1 + i % 28, 8 + i % 12, i % 60) for i in range(600)]
    expected = [add(s, 120) for s in starts]
    cal = custom()
    results: dict[int, list[datetime]] = {}

    def work(k: int) -> None:
        order = starts[k::4] + starts[:k:4]
        results[k] = [add(s, 120, cal) for s in order]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert results[k] == expected[k::4] + expected[:k:4]
