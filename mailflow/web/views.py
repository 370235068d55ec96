"""What the pages and the API show, read from the database: no HTTP here, so the HTML pages and
the JSON API give the same answers and tests can call these directly."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session, aliased

from mailflow.app import App
from mailflow.db.models import (
    Account,
    AccountStatus,
    AuditEvent,
    Case,
    CaseState,
    Consult,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    Role,
    utcnow,
)
from mailflow.parse.answer import NAMES as ANSWER_NAMES
from mailflow.parse.fields import consult_title
from mailflow.sla.calendar import BusinessCalendar
from mailflow.sla.explanation import explain_case
from mailflow.sla.words import deadline_in_words
from mailflow.web.security import WebUser
from mailflow.workflow import access, numbers, patient_history
from mailflow.workflow.case_detail import detail
from mailflow.workflow.eligibility import declines_of
from mailflow.workflow.waiting import in_one_line, waiting_reasons

AT_RISK_FRACTION = 0.25  # under a quarter of the target left

_assignee = aliased(Account)
SORTS: dict[str, Any] = {
    "number": Case.id,
    "state": Case.state,
    "urgency": Case.urgency,
    "assignee": _assignee.email,
    "deadline": Case.sla_deadline,
    "left": Case.sla_deadline,  # refined on the page by the computed minutes left
    "submitted": Case.submitted_at,
}
DEFAULT_SORT = "left"


@dataclass(frozen=True)
class OpenCase:
    number: str
    state: str
    urgency: str
    assignee: str | None
    assignee_name: str | None
    submitted_at: datetime | None
    deadline: datetime | None
    deadline_words: str
    target_minutes: int | None
    minutes_left: float | None  # business minutes; negative when breached
    sla: str  # on-track | at-risk | breached | paused | waiting
    waiting_reason: str = ""  # why nobody has it (workflow/waiting.py), for unassigned cases

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def minutes_left(cal: BusinessCalendar, now: datetime, deadline: datetime | None,
                 target: int | None, consumed: float, running: bool) -> float | None:
    """Business minutes to the deadline (negative once past it); while paused, the minutes
    the clock has left when it resumes."""
    if target is None:
        return None
    if not running:
        return round(target - consumed, 1)
    if deadline is None:
        return None
    if deadline >= now:
        return round(cal.business_minutes_between(now, deadline), 1)
    return -round(cal.business_minutes_between(deadline, now), 1)


def sla_status(left: float | None, target: int | None, running: bool) -> str:
    if left is None or target is None:
        return "waiting"  # no clock yet (e.g. received outside hours, not started)
    if left < 0 or (left == 0 and running):
        return "breached"
    if not running:
        return "paused"
    return "at-risk" if left < AT_RISK_FRACTION * target else "on-track"


def _scope(user: WebUser) -> ColumnElement[bool] | None:
    if user.role == Role.DERMATOLOGIST:
        return Case.assignee_id == user.id
    if user.role == Role.PROVIDER:
        return Case.provider_id == user.id
    return None


def open_cases(app: App, session: Session, user: WebUser, sort: str = DEFAULT_SORT,
               descending: bool = False, limit: int = 500, offset: int = 0
               ) -> tuple[list[OpenCase], int]:
    """Open cases the user may see (admin: all; dermatologist: their queue; provider: their
    own), one page of them and how many there are in all."""
    cal = app.sla.calendar
    now = utcnow()
    where = [Case.state.in_(CaseState.UNANSWERED)]
    scope = _scope(user)
    if scope is not None:
        where.append(scope)
    column = SORTS.get(sort, SORTS[DEFAULT_SORT])
    order = column.desc() if descending else column.asc()
    # Two steps: the page's ids in order (from the (state, deadline) index for the usual sorts;
    # sorting whole rows meant reading every open case's encrypted form), then those rows.
    ids_query = select(Case.id).where(and_(*where))
    if column is _assignee.email:
        ids_query = ids_query.outerjoin(_assignee, _assignee.id == Case.assignee_id)
    page_ids = list(session.execute(
        # "IS NULL" first rather than NULLS LAST: the same on both databases, and it keeps
        # SQLite from walking the deadline index through every closed case to avoid a sort
        ids_query.order_by(column.is_(None), order, Case.id).limit(limit).offset(offset)
    ).scalars())
    found = {r.id: r for r in session.execute(
        select(
            Case.id, Case.number, Case.state, Case.urgency, Case.submitted_at,
            Case.sla_deadline, Case.sla_target_minutes, Case.sla_consumed_minutes,
            Case.sla_running_since, Case.sla_stopped_at, _assignee.email, _assignee.name,
        )
        .outerjoin(_assignee, _assignee.id == Case.assignee_id)
        .where(Case.id.in_(page_ids))
    )} if page_ids else {}
    rows = [found[i] for i in page_ids if i in found]
    total = session.execute(
        select(func.count()).select_from(Case).where(and_(*where))
    ).scalar_one()
    waits = waiting_reasons(app, session, [r.id for r in rows if r.state == CaseState.SUBMITTED],
                            now)
    out = []
    for r in rows:
        running = r.sla_running_since is not None and r.sla_stopped_at is None
        left = minutes_left(cal, now, r.sla_deadline, r.sla_target_minutes,
                            r.sla_consumed_minutes, running)
        status = sla_status(left, r.sla_target_minutes, running)
        waiting = waits.get(r.id)
        if waiting is not None and waiting.at_risk and status != "breached":
            status = "at-risk"  # nobody can take it: at risk whatever the minutes left
        out.append(OpenCase(
            number=r.number, state=r.state, urgency=r.urgency, assignee=r.email,
            assignee_name=r.name, submitted_at=r.submitted_at, deadline=r.sla_deadline,
            deadline_words=deadline_in_words(r.sla_deadline, now, cal.timezone)
            if r.sla_deadline and running else "",
            target_minutes=r.sla_target_minutes, minutes_left=left,
            sla=status, waiting_reason=waiting.reason if waiting else "",
        ))
    if sort == "left":  # paused cases' stored deadlines are stale: order by what is left
        out.sort(key=lambda c: (c.minutes_left is None, c.minutes_left or 0.0),
                 reverse=descending)
    return out, total


def state_counts(session: Session, user: WebUser) -> dict[str, int]:
    query = select(Case.state, func.count()).group_by(Case.state)
    scope = _scope(user)
    if scope is not None:
        query = query.where(scope)
    found = _pairs(session.execute(query).all())
    return {state: int(found.get(state, 0)) for state in CaseState.ALL}


def breached_count(session: Session, user: WebUser) -> int:
    """Open cases past their deadline with the clock running (all of them, not one page)."""
    where = [Case.state.in_(CaseState.UNANSWERED), Case.sla_running_since.is_not(None),
             Case.sla_stopped_at.is_(None), Case.sla_deadline < utcnow()]
    scope = _scope(user)
    if scope is not None:
        where.append(scope)
    return int(session.execute(
        select(func.count()).select_from(Case).where(and_(*where))).scalar_one())


def met_today(app: App, session: Session, user: WebUser) -> dict[str, Any]:
    """Of the clocks stopped today (the calendar's day), how many met the target."""
    zone = app.sla.calendar.timezone
    today = utcnow().astimezone(zone).date()
    start = datetime.combine(today, time.min, zone)
    query = (
        select(Case.sla_met, func.count())
        .where(Case.sla_stopped_at >= start, Case.sla_stopped_at < start + timedelta(days=1),
               Case.sla_met.is_not(None))
        .group_by(Case.sla_met)
    )
    scope = _scope(user)
    if scope is not None:
        query = query.where(scope)
    counts = _pairs(session.execute(query).all())
    met, missed = int(counts.get(True, 0)), int(counts.get(False, 0))
    measured = met + missed
    return {"met": met, "measured": measured,
            "percent": round(100 * met / measured, 1) if measured else None}


def provider_cases(session: Session, user: WebUser, limit: int = 200) -> list[dict[str, Any]]:
    """A provider's own cases, newest first, with whether a report can be downloaded."""
    has_report = (
        select(func.count()).where(Consult.case_id == Case.id, Consult.pdf_sha != "")
        .correlate(Case).scalar_subquery()
    )
    rows = session.execute(
        select(Case.number, Case.state, Case.urgency, Case.created_at, Case.reviewed_at,
               has_report.label("reports"))
        .where(Case.provider_id == user.id)
        .order_by(Case.id.desc())
        .limit(limit)
    ).all()
    return [{"number": r.number, "state": r.state, "urgency": r.urgency,
             "created_at": r.created_at, "reviewed_at": r.reviewed_at,
             "has_report": bool(r.reports)} for r in rows]


# --- one case ----------------------------------------------------------------------------


find_case = numbers.find_case


def on_call_lead(app: App, user: WebUser) -> bool:
    entry = app.roster.entry(user.email)
    return user.role == Role.DERMATOLOGIST and entry is not None and entry.on_call_lead


def may_view(session: Session, user: WebUser, case: Case, lead: bool = False) -> bool:
    """`lead`: the user is an on-call lead (on_call_lead), who is paged about open cases and
    so may read any open one (workflow/access.py holds the rule)."""
    return access.may_read(session, user.role, user.id, case, lead)


def sla_explanation(app: App, session: Session, case: Case) -> dict[str, Any]:
    """What `mailflow sla explain` prints: the clock's events and how the minutes count."""
    cal = app.sla.calendar
    now = utcnow()
    explanation = explain_case(session, cal, case, now)
    running = case.sla_running_since is not None and case.sla_stopped_at is None
    left = minutes_left(cal, now, case.sla_deadline, case.sla_target_minutes,
                        case.sla_consumed_minutes, running)
    return {
        "target_minutes": case.sla_target_minutes,
        "deadline": case.sla_deadline,
        "consumed_minutes": round(case.sla_consumed_minutes, 1),
        "minutes_left": left if case.sla_stopped_at is None else None,
        "status": (("met" if case.sla_met else "missed") if case.sla_met is not None
                   else sla_status(left, case.sla_target_minutes, running)
                   if case.sla_stopped_at is None else "stopped"),
        "met": case.sla_met,
        "calendar_version": case.sla_calendar_version,
        "events": [{"at": e.at, "kind": e.kind, "consumed_minutes": e.consumed_minutes,
                    "deadline": e.deadline, "reason": e.detail.get("reason", "")}
                   for e in explanation.events],
        "segments": explanation.segment_rows(),
    }


def answer_rows(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """The consult's filled fields, in the answer parser's order and under its names."""
    keys = [k for k in ANSWER_NAMES if k in answer] + [k for k in answer
                                                        if k not in ANSWER_NAMES]
    return [(ANSWER_NAMES.get(k, k.replace("_", " ").capitalize()), str(answer[k]))
            for k in keys if answer[k]]


def case_view(app: App, session: Session, case: Case, user: WebUser) -> dict[str, Any]:
    """Everything the case page shows; providers get their own part only (no audit trail,
    no internal routing)."""
    data = detail(session, case)
    data["assignee_name"] = case.assignee.name if case.assignee else None
    data["provider_name"] = case.provider.name
    data["id"] = case.id  # for live updates of this page only (static/live.js)
    data["consults"] = [{**c, "pdf": c["has_report"], "answer_rows": answer_rows(c["answer"]),
                         "title": consult_title(c["version"])} for c in data["consults"]]
    data["sla"] = sla_explanation(app, session, case)
    internal = user.role != Role.PROVIDER
    audit_rows = list(session.execute(
        select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.id)
    ).scalars()) if internal else []
    timeline: list[dict[str, Any]] = []
    for m in data["messages"] if internal else []:
        timeline.append({"at": m["received_at"], "kind": "inbound",
                         "title": f"Message {m['id']} in: {m['status']}", "text": m["outcome"]})
    for o in data["outbox"] if internal else []:
        timeline.append({"at": o["created_at"], "kind": "outbound",
                         "title": f"Email out: {o['kind']} to {o['to']}",
                         "text": f"status {o['status']}"})
    for n in data["notes"]:
        if not internal and n["kind"] == "decline":
            continue
        timeline.append({"at": n["at"], "kind": "note",
                         "title": f"{n['kind'].replace('_', ' ').capitalize()}"
                                  f" from {n['author'] or 'system'}",
                         "text": n["body"]})
    for c in data["consults"]:
        timeline.append({"at": c["at"], "kind": "consult",
                         "title": f"{c['title']} by {c['dermatologist']}", "text": ""})
    for ev in audit_rows:
        if ev.action.startswith("case.") and ev.action != "case.viewed":
            before = ev.detail.get("from")
            to = ev.detail.get("to")
            text = f"{before or 'new'} → {to}" if to and ev.action != "case.reassigned" else ""
            timeline.append({"at": ev.at, "kind": "state",
                             "title": f"{ev.action.removeprefix('case.').replace('_', ' ')}"
                                      f" by {ev.actor}", "text": text})
    if not internal:  # the provider's milestones, without the internal routing
        for at, title in ((case.created_at, "Case received"),
                          (case.submitted_at, "Complete: with the dermatologists"),
                          (case.reviewed_at, "Reviewed: the consult report was sent"),
                          (case.closed_at, "Closed")):
            if at is not None:
                timeline.append({"at": at, "kind": "state", "title": title, "text": ""})
    if internal:
        for e in data["sla"]["events"]:
            timeline.append({"at": e["at"], "kind": "sla", "title": f"SLA clock: {e['kind']}",
                             "text": f"{e['consumed_minutes']:g} business minutes used"
                                     + (f" ({e['reason']})" if e["reason"] else "")})
    timeline.sort(key=lambda t: t["at"])
    data["timeline"] = timeline
    waiting = waiting_reasons(app, session, [case.id]).get(case.id) if internal else None
    data["waiting_reason"] = waiting.reason if waiting else ""
    data["declined_by"] = {d.email: in_one_line(d.reason) for d in
                           declines_of(session, [case.id])[case.id]} if internal else {}
    data["audit"] = [{"at": ev.at, "actor": ev.actor, "action": ev.action, "entity": ev.entity,
                      "entity_id": ev.entity_id, "detail": ev.detail} for ev in audit_rows]
    if not internal:
        data["messages"], data["outbox"] = [], []
        data["notes"] = [n for n in data["notes"] if n["kind"] != "decline"]
    data.update(over_time(app, session, case, user))
    return data


def over_time(app: App, session: Session, case: Case, user: WebUser) -> dict[str, Any]:
    """The patient's earlier cases this user may see (date, diagnosis, plan) and, per view,
    the earlier photos of the same place beside this case's (workflow/patient_history.py)."""
    lead = on_call_lead(app, user)

    def visible(other: Case) -> bool:
        return may_view(session, user, other, lead)

    settings = app.config.patients
    earlier = patient_history.consults(session, case, visible, settings.earlier_consults)
    rows = patient_history.photo_rows(session, case, visible, settings.earlier_photo_cases)
    return {
        "patient_record": case.patient_id,
        "earlier": [asdict(c) for c in earlier],
        "photo_rows": [{"view": r.view, "positions": list(r.positions),
                        "earlier": [asdict(p) for p in r.earlier]} for r in rows],
    }


def dermatologists(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(
        select(Account.email, Account.name)
        .where(Account.role == Role.DERMATOLOGIST, Account.status == AccountStatus.APPROVED)
        .order_by(Account.name)
    ).all()
    return [(r.email, r.name) for r in rows]


# --- quarantine and outbox -----------------------------------------------------------------


def quarantine(session: Session, limit: int = 500) -> list[dict[str, Any]]:
    rows = session.execute(
        select(InboundMessage, Case.number)
        .outerjoin(Case, Case.id == InboundMessage.case_id)
        .where(InboundMessage.status == MessageStatus.QUARANTINED)
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(limit)
    ).all()
    return [{"id": m.id, "received_at": m.received_at, "from": m.mail_from,
             "to": list(m.rcpt_to), "auth_user": m.auth_user, "tls": m.tls, "source": m.source,
             "size": m.size, "route": m.route, "reason_code": m.reason_code,
             "reason": m.outcome, "last_error": m.last_error, "case": number}
            for m, number in rows]


def outbox(session: Session, limit: int = 500) -> list[dict[str, Any]]:
    """Queued (waiting or retrying), sending and dead deliveries, the oldest first."""
    rows = session.execute(
        select(OutboundMessage, Case.number)
        .outerjoin(Case, Case.id == OutboundMessage.case_id)
        .where(OutboundMessage.status.in_(
            (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.DEAD)))
        .order_by(OutboundMessage.created_at, OutboundMessage.id)
        .limit(limit)
    ).all()
    return [{"id": o.id, "created_at": o.created_at, "kind": o.kind, "to": o.to_addr,
             "status": o.status, "attempts": o.attempts, "next_attempt_at": o.next_attempt_at,
             "last_error": o.last_error, "case": number,
             "retryable": o.status in (OutboxStatus.QUEUED, OutboxStatus.DEAD)}
            for o, number in rows]


def _pairs(result: Any) -> dict[Any, int]:
    return {key: int(count) for key, count in result}
