"""mailflow sla due|explain|report"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from typing import Any

from mailflow import audit
from mailflow.app import App
from mailflow.cli.cases import CliError, find_case
from mailflow.cli.output import emit_json
from mailflow.db.models import utcnow
from mailflow.db.session import transaction
from mailflow.sla.explanation import explain_case
from mailflow.sla.stats import sla_report
from mailflow.sla.words import deadline_in_words


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sla = sub.add_parser("sla", help="the two-business-hour promise")
    cmds = sla.add_subparsers(dest="action", required=True)
    due = cmds.add_parser("due", help="the deadline for a case completed at a given time")
    due.add_argument(
        "--at",
        required=True,
        metavar="ISO_TIME",
        help="e.g. 2026-11-27T16:30-05:00 (a time without offset is US Eastern)",
    )
    due.add_argument("--urgency", choices=("routine", "urgent"), default="routine")
    due.add_argument("--json", action="store_true")
    due.set_defaults(handler=cmd_due)
    explain = cmds.add_parser("explain", help="how a case's deadline was reached, to the minute")
    explain.add_argument("case", metavar="CASE")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(handler=cmd_explain)
    report = cmds.add_parser("report", help="met %%, turnaround, breaches")
    report.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=cmd_report)


def _parse_at(text: str, app: App) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-27T16:30-05:00") from exc
    return at if at.tzinfo else at.replace(tzinfo=app.sla.calendar.timezone)


def cmd_due(app: App, args: argparse.Namespace) -> int:
    at = _parse_at(args.at, app)
    policy = app.sla.policies.for_urgency(args.urgency)
    cal = app.sla.calendar
    opening = cal.next_opening(at)
    deadline = cal.add_business_minutes(opening, policy.target_minutes)
    data = {
        "completed_at": at.isoformat(),
        "urgency": policy.name,
        "target_minutes": policy.target_minutes,
        "clock_starts": opening.isoformat(),
        "deadline": deadline.isoformat(),
        "calendar_version": cal.version,
        "words": deadline_in_words(deadline, at, cal.timezone),
        "outside_hours": opening != at,
    }
    if args.json:
        emit_json(data)
    else:
        print(data["deadline"])
        when = (
            f"received after hours: clock starts {opening:%a %H:%M %Z}; " if opening != at else ""
        )
        print(f"{when}{policy.target_minutes} business minutes, {data['words']}")
    return 0


def cmd_explain(app: App, args: argparse.Namespace) -> int:
    cal = app.sla.calendar
    now = utcnow()
    with transaction(app.sessions) as session:
        case = find_case(session, args.case)
        explanation = explain_case(session, cal, case, now)
        events = explanation.events
        audit.case_event(session, case, "sla.explained", actor="cli")
        if not events:
            raise CliError(f"{case.number} has no SLA clock yet (it is {case.state})")
        data: dict[str, Any] = {
            "case": case.number,
            "state": case.state,
            "urgency": case.urgency,
            "target_minutes": case.sla_target_minutes,
            "deadline": case.sla_deadline,
            "consumed_minutes": round(case.sla_consumed_minutes, 2),
            "met": case.sla_met,
            "calendar_version": case.sla_calendar_version,
            "events": [
                {
                    "at": e.at,
                    "kind": e.kind,
                    "once": e.once,
                    "consumed_minutes": e.consumed_minutes,
                    "deadline": e.deadline,
                    "detail": e.detail,
                }
                for e in events
            ],
        }
    lines = explanation.lines
    data["segments"] = explanation.segment_rows()
    if args.json:
        emit_json(data)
        return 0
    zone = cal.timezone
    print(
        f"{data['case']}  {data['urgency']}, target {data['target_minutes']} business minutes"
        f" (calendar {data['calendar_version']})"
    )
    for e in data["events"]:
        local = e["at"].astimezone(zone)
        extra = f"  ({e['detail'].get('reason') or ''})" if e["detail"].get("reason") else ""
        print(
            f"  {local:%a %Y-%m-%d %H:%M %Z}  {e['kind']:<9}"
            f" used {round(e['consumed_minutes'])} min{extra}"
        )
    print("  how the minutes count:")
    for line in lines:
        print(f"    {line.describe()}")
    if data["deadline"]:
        print(
            f"  deadline: {data['deadline'].astimezone(zone):%a %Y-%m-%d %H:%M %Z}"
            + ("" if data["met"] is None else (" - met" if data["met"] else " - MISSED"))
        )
    return 0


def cmd_report(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        data = sla_report(session, app.sla.calendar.timezone, args.start, args.end)
    if args.json:
        emit_json(data)
        return 0

    def line(name: str, s: dict[str, Any]) -> str:
        met = "-" if s["met_percent"] is None else f"{s['met_percent']:g}%"
        p50 = "-" if s["p50_minutes"] is None else f"{s['p50_minutes']:.0f}"
        p90 = "-" if s["p90_minutes"] is None else f"{s['p90_minutes']:.0f}"
        return f"{name:<32} {s['cases']:>6} {met:>7} {p50:>8} {p90:>8} {s['breaches']:>9}"

    print(f"{'':<32} {'CASES':>6} {'MET':>7} {'P50 MIN':>8} {'P90 MIN':>8} {'BREACHES':>9}")
    print(line("all", data["overall"]))
    for name, s in data["by_dermatologist"].items():
        print(line(name, s))
    for week, s in data["by_week"].items():
        print(line(f"week of {week}", s))
    return 0
