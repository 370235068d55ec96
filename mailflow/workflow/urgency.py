"""Who may change a case's urgency, and what follows: the on-call page, the provider told.

Raising a case to urgent is open to everyone on it (the referring provider, the assigned
dermatologist, an admin): a patient who may need to be seen quickly never waits for a
permission. Lowering it is a clinical judgement, made only by the assigned dermatologist or
an admin; a provider who writes "Urgency: routine" on an urgent case is told, kindly, that the
dermatologist decides. The change itself is `cases.change_urgency` (one audit event, the SLA
clock re-targeted); this module decides whether it may happen and who hears of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, Role, utcnow
from mailflow.parse.form import parse_case_form, urgency_of
from mailflow.sla.words import deadline_in_words, when_in_words, working_hours_in_words
from mailflow.workflow import cases
from mailflow.workflow.notify import send

log = logging.getLogger(__name__)
S = CaseState
# Until the consult is recorded the urgency decides the deadline; after it, nothing.
CHANGEABLE = (S.INCOMPLETE, S.SUBMITTED, S.ASSIGNED, S.NEEDS_INFO)
URGENCIES = ("routine", "urgent")  # least urgent first; sla.toml gives each its policy
COMMAND_LINE = "cli"


@dataclass(frozen=True)
class UrgencyResult:
    before: str
    after: str
    refused: bool = False  # a lowering asked for by someone who may not make it

    @property
    def changed(self) -> bool:
        return self.before != self.after


def asked_in(text: str) -> str:
    """"urgent" or "routine" when the text has an Urgency line we can read, else ""."""
    value = parse_case_form(text).fields.get("urgency", "")
    return urgency_of(value) if value else ""


def only_urgency(text: str) -> bool:
    """The message says nothing but its Urgency line (nothing to pass on as a comment)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and bool(asked_in(text))


def may_lower(case: Case, by: Account | None) -> bool:
    if by is None:
        return True  # the command line: an admin at the server
    return by.role == Role.ADMIN or (
        by.role == Role.DERMATOLOGIST and case.assignee_id == by.id
    )


def set_urgency(
    app: App,
    session: Session,
    case: Case,
    wanted: str,
    by: Account | None,
    *,
    tell_provider: bool = True,
    cause: int | None = None,
) -> UrgencyResult:
    """Raise or lower a case's urgency as `by` asks (None: the command line)."""
    if wanted not in URGENCIES:
        raise ValueError(f"urgency is routine or urgent, not {wanted!r}")
    if case.state not in CHANGEABLE:
        raise cases.TransitionError(
            f"{case.number} is {case.state.replace('_', ' ')}: its urgency no longer changes "
            "anything")
    before = case.urgency
    if wanted == before:
        return UrgencyResult(before, before)
    actor = by.email if by else COMMAND_LINE
    if URGENCIES.index(wanted) < URGENCIES.index(before) and not may_lower(case, by):
        audit.case_event(session, case, "case.urgency_kept", actor=actor,
                         detail={"asked": wanted, "kept": before})
        if tell_provider and by is not None and by.id == case.provider_id:
            send(app, session, case, by, "urgency_kept", "urgency",
                 {"kept": True, **review_time(app, case)}, cause=cause)
        return UrgencyResult(before, before, refused=True)
    cases.change_urgency(session, case, wanted, actor, role=by.role if by else Role.ADMIN)
    log.info("case %s: urgency %s -> %s", case.number, before, wanted)
    if wanted == "urgent" and case.state != S.INCOMPLETE:  # incomplete: paged once complete
        page_on_call(app, session, case, raised_by=_who(case, by, "the referring provider"))
    if tell_provider:
        send(app, session, case, case.provider, "urgency_changed", "urgency",
             {"kept": False, "by": _who(case, by, "you"), **review_time(app, case)},
             cause=cause)
    return UrgencyResult(before, wanted)


def _target(app: App, urgency: str) -> int:
    return app.sla.policies.for_urgency(urgency).target_minutes


def _who(case: Case, by: Account | None, provider_is: str) -> str:
    if by is not None and by.id == case.provider_id:
        return provider_is
    if by is not None and by.role == Role.DERMATOLOGIST:
        return f"{by.name}, the reviewing dermatologist"
    return "the consult service's team"


def review_time(app: App, case: Case) -> dict[str, Any]:
    """The review time the urgency promises, and the deadline once the clock runs."""
    span = working_hours_in_words(_target(app, case.urgency))  # "1 working hour"
    # after hours now (not only "the clock starts later"): nobody may look until the opening
    closed = not app.sla.calendar.is_open(utcnow())
    out = expected_review(app, case)
    return {**out, "after_hours": out["after_hours"] or closed, "review_span": span,
            "urgent": case.urgency == "urgent"}


def expected_review(app: App, case: Case) -> dict[str, Any]:
    """What the acknowledgement promises: the deadline in words, after hours or not, and the
    red flags that suggest the case is urgent."""
    history = "\n".join(str(v) for v in case.form.values())
    out: dict[str, Any] = {
        "due_words": "",
        "after_hours": False,
        "target_minutes": None,
        "target_words": "",
        "start_words": "",
        "overdue": False,
        "red_flags": app.sla.policies.red_flags_in(history) if case.urgency != "urgent" else [],
    }
    if case.sla_deadline is not None and case.sla_started_at is not None:
        now = utcnow()
        out["due_words"] = deadline_in_words(case.sla_deadline, now, app.sla.calendar.timezone)
        out["after_hours"] = case.sla_started_at > now
        out["start_words"] = when_in_words(case.sla_started_at, now, app.sla.calendar.timezone)
        out["overdue"] = case.sla_deadline <= now and case.sla_running_since is not None
        out["target_minutes"] = case.sla_target_minutes
        if case.sla_target_minutes:
            out["target_words"] = working_hours_in_words(case.sla_target_minutes)
    return out


def page_on_call(app: App, session: Session, case: Case, raised_by: str = "") -> None:
    """An urgent case pages the on-call lead(s) at once, in hours or not, and the dermatologist
    it is assigned to; `raised_by` when it became urgent after it was submitted."""
    if not app.sla.policies.for_urgency(case.urgency).page_on_call:
        return
    emails = [e.email for e in app.roster.leads]
    people = {a.id: a for a in (
        session.execute(select(Account).where(Account.email.in_(emails))).scalars()
        if emails else [])}
    if raised_by and case.assignee is not None:
        people.setdefault(case.assignee.id, case.assignee)
    context = review_time(app, case) if raised_by else expected_review(app, case)
    for person in people.values():
        send(app, session, case, person, "urgent_page", "urgent_page",
             {**context, "raised_by": raised_by})
