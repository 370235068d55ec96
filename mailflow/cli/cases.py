"""mailflow cases list|show|assign|urgency|close|report|fhir"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.cli.output import emit, emit_json
from mailflow.db.models import Case, CaseState, Consult
from mailflow.db.session import transaction
from mailflow.parse.fields import field_label
from mailflow.workflow import numbers
from mailflow.workflow.case_detail import detail, summary


class CliError(Exception):
    pass


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cases = sub.add_parser("cases", help="consult cases")
    cmds = cases.add_subparsers(dest="action", required=True)
    lst = cmds.add_parser("list", help="list cases")
    lst.add_argument("--state", choices=CaseState.ALL)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)
    show = cmds.add_parser("show", help="one case in full (a PHI read: audited)")
    show.add_argument("case", metavar="CASE")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
    assign = cmds.add_parser("assign", help="assign (or reassign) a case to a dermatologist")
    assign.add_argument("case", metavar="CASE")
    assign.add_argument("--to", required=True, metavar="EMAIL")
    assign.add_argument("--force", action="store_true",
                        help="assign even to a dermatologist who declined the case")
    assign.set_defaults(handler=cmd_assign)
    urgency = cmds.add_parser("urgency", help="raise or lower a case's urgency (audited; the "
                              "SLA deadline follows, the provider is told)")
    urgency.add_argument("case", metavar="CASE")
    urgency.add_argument("level", choices=("routine", "urgent"))
    urgency.set_defaults(handler=cmd_urgency)
    close = cmds.add_parser("close", help="close a case (audited; the provider and the "
                            "dermatologist are told, as when it is closed on the web)")
    close.add_argument("case", metavar="CASE")
    close.set_defaults(handler=cmd_close)
    report = cmds.add_parser("report", help="write the latest consult report (a PHI read)")
    report.add_argument("case", metavar="CASE")
    report.add_argument("--out", required=True, metavar="FILE.pdf")
    report.set_defaults(handler=cmd_report)
    fhir = cmds.add_parser("fhir", help="write the consult as a FHIR R4 document Bundle for "
                           "an EHR (a PHI read: audited)")
    fhir.add_argument("case", metavar="CASE")
    fhir.add_argument("--out", required=True, metavar="FILE.json")
    fhir.set_defaults(handler=cmd_fhir)


def cmd_list(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        query = select(Case).order_by(Case.id)
        if args.state:
            query = query.where(Case.state == args.state)
        rows = [summary(c) for c in session.execute(query).scalars()]
    emit(
        rows,
        args.json,
        ["number", "state", "urgency", "provider", "photos", "created_at"],
        "no cases",
    )
    return 0


def find_case(session: Session, number: str, *, lock: bool = False) -> Case:
    case = numbers.find_case(session, number, lock=lock)
    if case is None:
        raise CliError(f"no case {number}")
    return case


def cmd_show(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        case = find_case(session, args.case)
        data = detail(session, case)
        audit.case_event(session, case, "case.viewed", actor="cli", detail={"via": "cli"})
    if args.json:
        emit_json(data)
        return 0
    print(f"{data['number']}  {data['state']}  {data['urgency']}  provider {data['provider']}")
    for secure in data["smime"]:
        print(f"  {secure}")
    if data["patient_record"] is not None:
        print(f"patient record P{data['patient_record']}")
    if data["missing"]:
        print("missing: " + ", ".join(data["missing"]))
    for key, value in data["fields"].items():
        print(f"  {field_label(key)}: {value}")
    for img in data["images"]:
        warn = f"  ({'; '.join(img['warnings'])})" if img["warnings"] else ""
        print(
            f"  photo {img['position']}: {img['view']} - {img['filename']} "
            f"{img['width']}x{img['height']}{warn}"
        )
    for note in data["notes"]:
        print(
            f"  [{note['at']:%Y-%m-%d %H:%M}] {note['kind']} from {note['author']}: {note['body']}"
        )
    return 0


def cmd_assign(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.assign import DeclinedBefore, assign_by_hand
    from mailflow.workflow.cases import TransitionError
    from mailflow.workflow.eligibility import declines_of

    with transaction(app.sessions) as session:
        case = find_case(session, args.case)
        try:
            derm = assign_by_hand(app, session, case, args.to, actor="cli", force=args.force)
        except DeclinedBefore as exc:
            when = exc.decline.at.astimezone(app.sla.calendar.timezone)
            raise CliError(f"{exc} (on {when:%Y-%m-%d %H:%M} ET). "
                           "To assign it to them anyway, add --force.") from exc
        except TransitionError as exc:
            raise CliError(str(exc)) from exc
        theirs = [d for d in declines_of(session, [case.id])[case.id] if d.author_id == derm.id]
        number, email = case.number, derm.email
    if theirs:
        reason = " ".join(theirs[-1].reason.split())
        print(f"warning: {email} declined {number} before: \"{reason}\"", file=sys.stderr)
    print(f"{number} assigned to {email}; the case was emailed to them")
    return 0


def cmd_urgency(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.cases import TransitionError
    from mailflow.workflow.urgency import set_urgency

    with transaction(app.sessions) as session:
        case = find_case(session, args.case, lock=True)
        try:
            result = set_urgency(app, session, case, args.level, None)
        except TransitionError as exc:
            raise CliError(str(exc)) from exc
        number, deadline = case.number, case.sla_deadline
    if not result.changed:
        print(f"{number} is already {result.after}")
        return 0
    due = f"; review due {deadline.astimezone(app.sla.calendar.timezone):%a %Y-%m-%d %H:%M %Z}" \
        if deadline else ""
    print(f"{number} is now {result.after}{due}; the provider was told")
    return 0


def cmd_close(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.cases import TransitionError
    from mailflow.workflow.transitions import BY_THE_TEAM, close_case

    with transaction(app.sessions) as session:
        case = find_case(session, args.case, lock=True)
        try:
            closed = close_case(app, session, case, by=None, actor="cli", why=BY_THE_TEAM)
        except TransitionError as exc:
            raise CliError(str(exc)) from exc
        number = case.number
    print(f"{number} closed; the provider and the dermatologist were told" if closed
          else f"{number} is already closed")
    return 0


def cmd_report(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        case = find_case(session, args.case)
        sha = session.execute(
            select(Consult.pdf_sha)
            .where(Consult.case_id == case.id, Consult.pdf_sha != "")
            .order_by(Consult.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        if sha is None:
            raise CliError(f"{case.number} has no consult report yet (it is {case.state})")
        audit.case_event(session, case, "report.read", actor="cli", detail={"via": "cli"})
        data = app.blobs.get(sha)
    Path(args.out).write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


def cmd_fhir(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.fhir import NoReport, bundle_json

    with transaction(app.sessions) as session:
        case = find_case(session, args.case)
        try:
            text = bundle_json(app, session, case)
        except NoReport as exc:
            raise CliError(str(exc)) from exc
        audit.case_event(session, case, "case.fhir_exported", actor="cli", detail={"via": "cli"})
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0
