"""Each case's SLA clock: start, pause, resume, stop, and when the next warning or breach is due.

The clock counts business minutes of the calendar in force. It starts when a case becomes
complete (at the next opening if that is outside hours), pauses while the dermatologist waits
for the provider, resumes on the provider's reply, and stops when the consult is recorded.
Every step is an SlaEvent with the minutes used so far and the deadline, so `mailflow sla
explain` can show how any deadline was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.db.models import Case, SlaEvent
from mailflow.sla.calendar import BusinessCalendar
from mailflow.sla.policy import Policy, SlaPolicies

BREACH = "breach"


@dataclass(frozen=True)
class SlaContext:
    calendar: BusinessCalendar
    policies: SlaPolicies


SESSION_KEY = "sla"  # the sessions' info entry bind() sets


class ClockNotBound(RuntimeError):
    """A case changed state in a session whose sessionmaker was not bound to a clock: its
    deadline would silently stop following the case."""


def bind(sessions: sessionmaker[Session], ctx: SlaContext) -> None:
    """Every session of `sessions` carries this clock: the state changes made in it
    (workflow.cases) move the case's SLA clock. App.open binds its sessions once."""
    info = dict(sessions.kw.get("info") or {})
    info[SESSION_KEY] = ctx
    sessions.configure(info=info)


def context_of(session: Session) -> SlaContext:
    """The clock bound to this session's sessionmaker; a session without one is a wiring
    mistake and fails here, not by leaving a case's deadline behind."""
    ctx = session.info.get(SESSION_KEY)
    if not isinstance(ctx, SlaContext):
        raise ClockNotBound("this session has no SLA clock: open sessions from App.sessions "
                            "(sla.clock.bind)")
    return ctx


def warning_key(fraction: float) -> str:
    return f"warning-{round(fraction * 100)}"


def policy_of(ctx: SlaContext, case: Case) -> Policy:
    return ctx.policies.for_urgency(case.urgency)


def _event(
    session: Session,
    ctx: SlaContext,
    case: Case,
    kind: str,
    at: datetime,
    once: str | None = None,
    **detail: object,
) -> SlaEvent:
    event = SlaEvent(
        case_id=case.id,
        at=at,
        kind=kind,
        once=once,
        consumed_minutes=round(case.sla_consumed_minutes, 3),
        deadline=case.sla_deadline,
        calendar_version=ctx.calendar.version,
        detail={k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in detail.items()},
    )
    session.add(event)
    return event


def fired(session: Session, case: Case) -> set[str]:
    return set(
        session.execute(
            select(SlaEvent.once).where(SlaEvent.case_id == case.id, SlaEvent.once.is_not(None))
        ).scalars()
    )


def schedule_next(session: Session, ctx: SlaContext, case: Case) -> None:
    """The next warning not yet given, else the breach; nothing when paused or stopped."""
    if case.sla_running_since is None or case.sla_stopped_at is not None:
        case.sla_next_due_at, case.sla_next_kind = None, ""
        return
    policy = policy_of(ctx, case)
    done = fired(session, case)
    target = case.sla_target_minutes or policy.target_minutes
    for fraction in policy.warnings:
        key = warning_key(fraction)
        if key not in done:
            case.sla_next_due_at = _after(ctx, case, fraction * target)
            case.sla_next_kind = key
            return
    if BREACH not in done:
        case.sla_next_due_at, case.sla_next_kind = case.sla_deadline, BREACH
    else:
        case.sla_next_due_at, case.sla_next_kind = None, ""


def _after(ctx: SlaContext, case: Case, minutes_of_target: float) -> datetime:
    assert case.sla_running_since is not None
    remaining = max(0.0, minutes_of_target - case.sla_consumed_minutes)
    return ctx.calendar.add_business_minutes(case.sla_running_since, remaining)


def start(session: Session, ctx: SlaContext, case: Case, at: datetime) -> None:
    if case.sla_started_at is not None:
        return  # e.g. back in the pool after a decline: the same clock runs on
    policy = policy_of(ctx, case)
    opening = ctx.calendar.next_opening(at)
    case.sla_target_minutes = policy.target_minutes
    case.sla_started_at = opening
    case.sla_running_since = opening
    case.sla_consumed_minutes = 0.0
    case.sla_deadline = ctx.calendar.add_business_minutes(opening, policy.target_minutes)
    case.sla_calendar_version = ctx.calendar.version
    session.flush()
    schedule_next(session, ctx, case)
    _event(
        session,
        ctx,
        case,
        "start",
        at,
        policy=policy.name,
        target=policy.target_minutes,
        complete_at=at,
        opening=opening,
        outside_hours=opening != at,
    )


def pause(session: Session, ctx: SlaContext, case: Case, at: datetime) -> None:
    if case.sla_running_since is None or case.sla_stopped_at is not None:
        return
    case.sla_consumed_minutes += ctx.calendar.business_minutes_between(case.sla_running_since, at)
    case.sla_running_since = None
    schedule_next(session, ctx, case)
    _event(session, ctx, case, "pause", at, reason="waiting for the provider")


def resume(session: Session, ctx: SlaContext, case: Case, at: datetime) -> None:
    if case.sla_started_at is None or case.sla_running_since is not None:
        return
    if case.sla_stopped_at is not None:
        return
    opening = ctx.calendar.next_opening(at)
    target = case.sla_target_minutes or policy_of(ctx, case).target_minutes
    case.sla_running_since = opening
    case.sla_deadline = ctx.calendar.add_business_minutes(
        opening, max(0.0, target - case.sla_consumed_minutes)
    )
    schedule_next(session, ctx, case)
    _event(session, ctx, case, "resume", at, opening=opening)


def stop(session: Session, ctx: SlaContext, case: Case, at: datetime, reviewed: bool) -> None:
    if case.sla_started_at is None or case.sla_stopped_at is not None:
        return
    if case.sla_running_since is not None:
        case.sla_consumed_minutes += ctx.calendar.business_minutes_between(
            case.sla_running_since, at
        )
    target = case.sla_target_minutes or policy_of(ctx, case).target_minutes
    case.sla_running_since = None
    case.sla_stopped_at = at
    case.sla_met = (case.sla_consumed_minutes <= target + 1e-9) if reviewed else None
    case.sla_next_due_at, case.sla_next_kind = None, ""
    kind = ("met" if case.sla_met else "missed") if reviewed else "stopped"
    _event(session, ctx, case, kind, at, target=target)


def recompute(session: Session, ctx: SlaContext, case: Case, at: datetime) -> bool:
    """After a calendar change: the same minutes used, counted on the new calendar."""
    if case.sla_calendar_version == ctx.calendar.version or case.sla_stopped_at is not None:
        return False
    if case.sla_started_at is None:
        return False
    before = case.sla_deadline
    if case.sla_running_since is not None:
        target = case.sla_target_minutes or policy_of(ctx, case).target_minutes
        case.sla_deadline = ctx.calendar.add_business_minutes(
            case.sla_running_since, max(0.0, target - case.sla_consumed_minutes)
        )
    old_version = case.sla_calendar_version
    case.sla_calendar_version = ctx.calendar.version
    schedule_next(session, ctx, case)
    _event(
        session,
        ctx,
        case,
        "recompute",
        at,
        old_calendar=old_version,
        old_deadline=before,
        new_deadline=case.sla_deadline,
    )
    return True


def on_transition(session: Session, case: Case, before: str | None, to: str, at: datetime) -> None:
    """Called by workflow.cases for every state change: the clock follows the case."""
    ctx = context_of(session)
    if to == "submitted" and before in (None, "incomplete"):
        start(session, ctx, case, at)
    elif to == "submitted" and before == "needs_info":
        resume(session, ctx, case, at)
    elif to == "needs_info":
        pause(session, ctx, case, at)
    elif to == "assigned" and before == "needs_info":
        resume(session, ctx, case, at)
    elif to == "reviewed" and before in ("assigned", "needs_info"):
        stop(session, ctx, case, at, reviewed=True)
    elif to == "closed" and case.sla_stopped_at is None:
        stop(session, ctx, case, at, reviewed=False)


def on_urgency(session: Session, case: Case, before: str, at: datetime, reason: str) -> None:
    """Called by workflow.cases when a case's urgency changes: the clock follows the case."""
    retarget(session, context_of(session), case, before, at, reason)


def retarget(
    session: Session, ctx: SlaContext, case: Case, before: str, at: datetime, reason: str
) -> None:
    """A new urgency (already set on the case): the same minutes used, the new policy's target.

    A clock not started yet starts with the new policy when the case is complete; a paused
    one gets its new deadline when it resumes; a deadline already passed is due at once, so
    the enforcer's next pass gives the breach.
    """
    if case.sla_started_at is None or case.sla_stopped_at is not None:
        return
    policy = policy_of(ctx, case)
    old_target = case.sla_target_minutes
    case.sla_target_minutes = policy.target_minutes
    running_since = case.sla_running_since
    if running_since is not None:
        case.sla_consumed_minutes += ctx.calendar.business_minutes_between(running_since, at)
        case.sla_running_since = max(at, running_since)
        case.sla_deadline = ctx.calendar.add_business_minutes(
            case.sla_running_since, max(0.0, policy.target_minutes - case.sla_consumed_minutes)
        )
    schedule_next(session, ctx, case)
    _event(session, ctx, case, "urgency", at, urgency=case.urgency, previous=before,
           target=policy.target_minutes, previous_target=old_target, reason=reason)
