"""The SLA enforcer: give each due warning and breach, exactly once.

In workflow/, not sla/: a breach can reassign the case and emails people (state changes and
their notifications are workflow's); sla/ only counts the time and imports no workflow.

Due work is found by an index (cases.sla_next_due_at), each case handled in its own short
transaction. An SlaEvent with a unique (case, once) key records each firing, so two
schedulers, or one restarted halfway, cannot give the same warning twice. The scheduler
(workflow/scheduler.py) calls `fire_due` every minute and at each case's due time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, utcnow
from mailflow.db.session import ROW_LOCK, transaction
from mailflow.outbound.outbox import Email, queue
from mailflow.sla import clock
from mailflow.sla.words import clock_time, deadline_in_words
from mailflow.workflow.assign import choose
from mailflow.workflow.cases import assign
from mailflow.workflow.notify import notify_dermatologist

log = logging.getLogger(__name__)
MAX_STEPS = 10  # warnings and the breach of one case, caught up in one pass


def due_cases(app: App, now: datetime, limit: int = 1000) -> list[int]:
    with app.sessions() as session:
        return list(session.execute(
            select(Case.id)
            .where(Case.sla_next_due_at <= now, Case.state.in_(CaseState.CLOCK_RUNNING))
            .order_by(Case.sla_next_due_at)
            .limit(limit)
        ).scalars())


def fire_due(app: App, now: datetime | None = None, case_ids: list[int] | None = None) -> int:
    """Fire whatever is due; returns how many warnings and breaches were given."""
    now = now or utcnow()
    given = 0
    for case_id in case_ids if case_ids is not None else due_cases(app, now):
        try:
            with transaction(app.sessions) as session:
                case = session.execute(
                    select(Case).where(Case.id == case_id)
                    .with_for_update(skip_locked=True, **ROW_LOCK)
                ).scalar_one_or_none()
                if case is None or case.sla_next_due_at is None or case.sla_next_due_at > now:
                    continue  # another scheduler got here first, or nothing is due any more
                if case.state not in CaseState.CLOCK_RUNNING:
                    continue
                # catch up on everything overdue (an enforcer that was down), in order
                for _ in range(MAX_STEPS):
                    if case.sla_next_due_at is None or case.sla_next_due_at > now:
                        break
                    given += fire(app, session, case, now)
        except Exception as exc:
            log.error("case %d: SLA step failed (%s); retried next minute", case_id,
                      type(exc).__name__)
    return given


def fire(app: App, session: Session, case: Case, now: datetime) -> int:
    ctx = app.sla
    kind = case.sla_next_kind
    urgent = case.urgency == "urgent"
    if (kind != clock.BREACH and ctx.policies.reminders_in_hours_only and not urgent
            and not ctx.calendar.is_open(now)):
        case.sla_next_due_at = ctx.calendar.next_opening(now)  # remind at the next opening
        return 0
    # a reminder that comes after the deadline is noise: record it as skipped, say nothing
    moot = kind != clock.BREACH and case.sla_deadline is not None and case.sla_deadline <= now
    try:
        with session.begin_nested():
            clock._event(session, ctx, case, "breach" if kind == clock.BREACH else "warning",
                         now, once=kind, due=case.sla_next_due_at, skipped=moot)
            session.flush()
    except IntegrityError:  # given already, by another scheduler: move on to the next one
        clock.schedule_next(session, ctx, case)
        return 0
    if moot:
        clock.schedule_next(session, ctx, case)
        return 0
    if kind == clock.BREACH:
        _escalate(app, session, case, now)
    else:
        _remind(app, session, case, now, kind)
    audit.case_event(session, case, f"sla.{'breach' if kind == clock.BREACH else 'warning'}",
                     detail={"kind": kind})
    clock.schedule_next(session, ctx, case)
    log.info("case %s: SLA %s given", case.number, kind)
    return 1


def _leads(app: App, session: Session) -> list[Account]:
    emails = [e.email for e in app.roster.leads]
    if not emails:
        return []
    return list(session.execute(select(Account).where(Account.email.in_(emails))).scalars())


def _context(app: App, case: Case, now: datetime) -> dict[str, object]:
    zone = app.sla.calendar.timezone
    assert case.sla_deadline is not None
    return {
        "deadline_words": deadline_in_words(case.sla_deadline, now, zone),
        "deadline_time": clock_time(case.sla_deadline, zone),
        "assignee": case.assignee,
    }


def _remind(app: App, session: Session, case: Case, now: datetime, kind: str) -> None:
    to = [case.assignee] if case.assignee else _leads(app, session)
    percent = kind.split("-")[-1]
    for person in to:
        queue(app, session, Email(
            kind="sla_reminder", template="sla_reminder", to=person.email, case=case,
            recipient=person, context={**_context(app, case, now), "percent": percent},
        ))


def _escalate(app: App, session: Session, case: Case, now: datetime) -> None:
    people = {a.email: a for a in _leads(app, session)}
    for email in app.sla.policies.admins:
        people.setdefault(email, None)  # type: ignore[arg-type]
    for email, account in people.items():
        queue(app, session, Email(
            kind="sla_escalation", template="sla_escalation", to=email, case=case,
            recipient=account, context=_context(app, case, now),
        ))
    if app.sla.policies.reassign_on_breach and case.assignee is not None:
        other = choose(app, session, case, now)
        if other is not None and other.id != case.assignee_id:
            assign(session, case, other, "sla")
            notify_dermatologist(app, session, case, other)


def recompute_open(app: App, now: datetime | None = None) -> int:
    """After a calendar change: open cases' deadlines counted again on the new calendar."""
    now = now or utcnow()
    version = app.sla.calendar.version
    with app.sessions() as session:
        stale = list(session.execute(
            select(Case.id).where(Case.sla_stopped_at.is_(None), Case.sla_started_at.is_not(None),
                                  Case.sla_calendar_version != version)
        ).scalars())
    done = 0
    for case_id in stale:
        with transaction(app.sessions) as session:
            case = session.get(Case, case_id, with_for_update=ROW_LOCK)
            if case is None:
                continue
            before = case.sla_deadline
            if clock.recompute(session, app.sla, case, now):
                done += 1
                audit.case_event(session, case, "sla.recomputed", detail={"calendar": version,
                                     "old_deadline": before.isoformat() if before else None,
                                     "new_deadline": case.sla_deadline.isoformat()
                                     if case.sla_deadline else None})
    if done:
        log.info("calendar %s: %d open deadlines recomputed", version, done)
    return done
