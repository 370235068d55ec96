"""The dermatologist roster (schedules/roster.toml): who is on duty when, for how many cases,
licensed where. Read once at start; a wrong entry stops start-up with a message naming it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailflow.sla.calendar_file import WEEKDAYS


class RosterError(Exception):
    pass


@dataclass(frozen=True)
class Shift:
    start: time
    end: time

    def covers(self, t: time) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class RosterEntry:
    email: str
    max_open: int
    states: frozenset[str]
    on_call_lead: bool
    hours: dict[str, tuple[Shift, ...]] = field(default_factory=dict)

    def licensed_in(self, state: str) -> bool:
        return not self.states or state.upper() in self.states


@dataclass(frozen=True)
class Roster:
    timezone: ZoneInfo
    entries: tuple[RosterEntry, ...]

    def on_duty(self, at: datetime) -> list[RosterEntry]:
        local = at.astimezone(self.timezone)
        day = WEEKDAYS[local.weekday()]
        return [
            e for e in self.entries if any(s.covers(local.time()) for s in e.hours.get(day, ()))
        ]

    def next_start(self, entry: RosterEntry, after: datetime) -> datetime | None:
        """When this dermatologist's next shift begins after `after` (within a week)."""
        local = after.astimezone(self.timezone)
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            shifts = entry.hours.get(WEEKDAYS[day.weekday()], ())
            for shift in sorted(shifts, key=lambda s: s.start):
                start = datetime.combine(day, shift.start, self.timezone)
                if start > local:
                    return start
        return None

    def entry(self, email: str) -> RosterEntry | None:
        return next((e for e in self.entries if e.email == email.lower()), None)

    @property
    def leads(self) -> list[RosterEntry]:
        return [e for e in self.entries if e.on_call_lead]


def _shift(text: str, where: str) -> Shift:
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start = time.fromisoformat(start_text)
        end = time.max if end_text == "24:00" else time.fromisoformat(end_text)
    except ValueError as exc:
        raise RosterError(f"{where}: {text!r} is not a range like '09:00-17:00'") from exc
    if end <= start:
        raise RosterError(f"{where}: {text!r} ends before it starts")
    return Shift(start, end)


def load_roster(path: Path) -> Roster:
    if not path.exists():
        return Roster(ZoneInfo("America/New_York"), ())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{path}: not valid TOML: {exc}") from exc
    try:
        zone = ZoneInfo(data.get("timezone", "America/New_York"))
    except ZoneInfoNotFoundError as exc:
        raise RosterError(f"{path}: unknown timezone {data.get('timezone')!r}") from exc
    entries = []
    for i, raw in enumerate(data.get("dermatologist", []), start=1):
        where = f"{path.name}: dermatologist {i}"
        unknown = set(raw) - {"email", "name", "max_open", "states", "on_call_lead", "hours"}
        if unknown:
            raise RosterError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if "email" not in raw:
            raise RosterError(f"{where}: no email")
        hours: dict[str, tuple[Shift, ...]] = {}
        for day, ranges in raw.get("hours", {}).items():
            if day not in WEEKDAYS:
                raise RosterError(f"{where}: {day!r} is not one of {', '.join(WEEKDAYS)}")
            hours[day] = tuple(_shift(r, f"{where} {day}") for r in ranges)
        max_open = raw.get("max_open", 10)
        if not isinstance(max_open, int) or max_open < 1:
            raise RosterError(f"{where}: max_open must be a whole number of at least 1")
        entries.append(
            RosterEntry(
                email=str(raw["email"]).strip().lower(),
                max_open=max_open,
                states=frozenset(s.upper() for s in raw.get("states", [])),
                on_call_lead=bool(raw.get("on_call_lead", False)),
                hours=hours,
            )
        )
    return Roster(zone, tuple(entries))
