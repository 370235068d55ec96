"""What one local date of the calendar is: its open hours, and why time outside them is not
counted (weekend, outside hours, a holiday, a closure). Pure: no clock, no time zone maths."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import holidays as holidays_pkg

from mailflow.sla.calendar_file import CalendarDefinition, Range, fmt_range

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

COUNTED = "business hours"
OUTSIDE_HOURS = "outside hours"
WEEKEND = "weekend"


@dataclass(frozen=True)
class Closed:
    """Why a day that would normally be open is closed (a holiday or a closure)."""

    date: date
    name: str


@dataclass(frozen=True)
class DayRule:
    """A local date's open hours (minutes after local midnight) and the notes explaining it."""

    hours: tuple[Range, ...]
    gap_note: str  # why time outside the hours (or the whole day) is not counted
    count_note: str  # note for counted time
    closed: Closed | None  # a normally open day closed all day (or a short day)


class HolidayNames:
    """The public holidays of a definition's country, by year, looked up once per year."""

    def __init__(self, definition: CalendarDefinition) -> None:
        self._def = definition
        self._years: dict[int, dict[date, str]] = {}

    def on(self, day: date) -> str | None:
        return self._year(day.year).get(day)

    def _year(self, year: int) -> dict[date, str]:
        names = self._years.get(year)
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
            self._years[year] = names
        return names


def day_rule(definition: CalendarDefinition, day: date, holiday: str | None) -> DayRule:
    """An extra day beats a closure, which beats a holiday, which beats the weekly hours."""
    weekly = definition.weekly[day.weekday()]
    extra = definition.extra_days.get(day)
    closure = definition.closures.get(day)
    if weekly:
        gap_note = OUTSIDE_HOURS
    elif day.weekday() >= 5:
        gap_note = WEEKEND
    else:
        gap_note = f"closed on {_DAY_NAMES[day.weekday()]}s"
    if extra is not None:
        return DayRule(extra.hours or (), OUTSIDE_HOURS, f"{COUNTED} (extra day: {extra.name})",
                       None)
    if closure is not None:
        if closure.hours is None:
            closed = Closed(day, closure.name) if weekly else None
            return DayRule((), f"closure: {closure.name}", COUNTED, closed)
        short = ", ".join(fmt_range(r) for r in closure.hours)
        return DayRule(closure.hours, f"closure: {closure.name} (open {short} only)",
                       f"{COUNTED} (short day: {closure.name})",
                       Closed(day, f"{closure.name} (open {short} only)"))
    if holiday is not None and weekly:
        return DayRule((), f"{holiday} (holiday)", COUNTED, Closed(day, holiday))
    return DayRule(weekly, gap_note, COUNTED, None)
