"""How a case's deadline was reached, to the minute: one reading for the CLI and the web.

The clock's events give the runs (start/resume to pause/stop); the calendar explains each run
and the time still to count. For a person the calendar's fine segments are then read as one
line per interval: counted time, or one stretch of closed time with its reasons ("outside
hours; Thanksgiving Day (holiday); weekend"), in whole minutes that add up to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.db.models import Case, SlaEvent
from mailflow.sla.calendar import BusinessCalendar, Segment

PAUSED = "paused: waiting for the provider"
STARTS = ("start", "resume")
STOPS = ("pause", "met", "missed", "stopped")


@dataclass(frozen=True)
class Interval:
    """One line of an explanation: counted business time, or a stretch not counted."""

    start: datetime
    end: datetime
    minutes: int  # whole minutes counted; 0 for a stretch not counted
    reason: str  # "business hours" or why the time did not count
    counted: bool

    def describe(self) -> str:
        """One line for a terminal, e.g.
        "Wed 2026-11-25 16:00 -> Wed 2026-11-25 17:00 EST    60 min  business hours"."""
        start = self.start.strftime("%a %Y-%m-%d %H:%M")
        end = self.end.strftime("%a %Y-%m-%d %H:%M %Z")
        counted = f"{self.minutes} min" if self.counted else "-"
        return f"{start} -> {end}  {counted:>8}  {self.reason}"


def clock_runs(events: list[SlaEvent], now: datetime) -> list[tuple[datetime, datetime]]:
    """The intervals the clock ran: from each start/resume opening to the next pause/stop."""
    runs: list[tuple[datetime, datetime]] = []
    begin: datetime | None = None
    for event in events:
        if event.kind in STARTS:
            begin = datetime.fromisoformat(event.detail["opening"])
        elif event.kind in STOPS and begin is not None:
            runs.append((begin, event.at))
            begin = None
    if begin is not None:
        runs.append((begin, now))
    return runs


def case_segments(cal: BusinessCalendar, case: Case, events: list[SlaEvent],
                  now: datetime) -> list[Segment]:
    """The calendar's segments for a case: each run counted, pauses, then what is left."""
    segments: list[Segment] = []
    runs = clock_runs(events, now)
    for i, (begin, end) in enumerate(runs):
        if end > begin:
            segments += cal.explain(begin, cal.business_minutes_between(begin, end))
        if i + 1 < len(runs):  # the clock stood still until the next run
            segments.append(Segment(end.astimezone(cal.timezone),
                                    runs[i + 1][0].astimezone(cal.timezone), 0, PAUSED))
    if case.sla_deadline is not None and case.sla_running_since is not None:
        remaining = max(0.0, (case.sla_target_minutes or 0) - case.sla_consumed_minutes
                        - cal.business_minutes_between(case.sla_running_since, now))
        segments += cal.explain(max(now, case.sla_running_since), remaining)
    return segments


def readable(segments: list[Segment]) -> list[Interval]:
    """One line per interval: touching gaps are joined (their reasons listed once each) and
    counted minutes are whole, rounded on the running total so the lines add up to it."""
    lines: list[Interval] = []
    total = 0.0
    shown = 0
    for seg in segments:
        if seg.counted:
            total += seg.minutes
            whole = round(total) - shown
            shown += whole
            if lines and lines[-1].counted and lines[-1].end == seg.start \
                    and lines[-1].reason == seg.note:
                last = lines.pop()
                lines.append(Interval(last.start, seg.end, last.minutes + whole, seg.note, True))
            else:
                lines.append(Interval(seg.start, seg.end, whole, seg.note, True))
            continue
        if lines and not lines[-1].counted and lines[-1].end == seg.start:
            last = lines.pop()
            reasons = last.reason.split("; ")
            reason = last.reason if seg.note in reasons else f"{last.reason}; {seg.note}"
            lines.append(Interval(last.start, seg.end, 0, reason, False))
        else:
            lines.append(Interval(seg.start, seg.end, 0, seg.note, False))
    return lines


@dataclass(frozen=True)
class CaseExplanation:
    """A case's clock events and the lines that explain its minutes (`mailflow sla explain`
    and the web's case page read the same one)."""

    events: list[SlaEvent]
    lines: list[Interval]

    def segment_rows(self) -> list[dict[str, Any]]:
        return [{"start": line.start, "end": line.end, "minutes": line.minutes,
                 "counted": line.counted, "note": line.reason} for line in self.lines]


def explain_case(session: Session, cal: BusinessCalendar, case: Case,
                 now: datetime) -> CaseExplanation:
    events = list(session.execute(
        select(SlaEvent).where(SlaEvent.case_id == case.id).order_by(SlaEvent.id)
    ).scalars())
    return CaseExplanation(events, readable(case_segments(cal, case, events, now)))
