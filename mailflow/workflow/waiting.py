"""Why a submitted case is waiting, in plain words for an admin, and the alarm when a decline
leaves it with nobody: nobody is left waiting without someone being told.

A case waits (state `submitted`, nobody assigned) when no dermatologist on the roster can take
it now: nobody on duty, nobody licensed in the provider's state, everyone at their limit, or
everyone suitable has declined it. The reason is worked out when asked (the overview, the case
page), from the same survey the assignment uses, so it is never stale.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, utcnow
from mailflow.outbound.outbox import Email, queue
from mailflow.sla.words import clock_time, deadline_in_words
from mailflow.workflow.eligibility import Decline, Staff, Verdict, declines_of, survey

log = logging.getLogger(__name__)
REASON_CHARS = 200  # of a decline's reason, on one line of the overview


@dataclass(frozen=True)
class Waiting:
    reason: str  # plain words: "Declined by Dr X: outside my expertise; no other ..."
    at_risk: bool  # nobody can take it and someone must act: shown as at risk
    why_nobody: str  # the reason without the declines' own words (which may carry PHI)


def in_one_line(text: str) -> str:
    line = " ".join(text.split()).rstrip(" .;,")
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1].rstrip() + "…"


def _when(at: datetime, now: datetime, app: App) -> str:
    zone = app.roster.timezone
    days = (at.astimezone(zone).date() - now.astimezone(zone).date()).days
    day = ("today" if days == 0 else "tomorrow" if days == 1
           else at.astimezone(zone).strftime("%A"))
    return f"{day} at {clock_time(at, zone)}"


@dataclass(frozen=True)
class _Nobody:
    text: str
    lasting: bool  # nobody on the roster could ever take it as it stands
    next_start: datetime | None = None  # when someone who could comes on duty


def _nobody(app: App, verdicts: list[Verdict], state: str | None, declined: bool,
            at: datetime) -> _Nobody:
    """Why no one in `verdicts` can take the case now."""
    other = "other " if declined else ""
    licensed_in = f" licensed in {state}" if state else ""
    candidates = [v for v in verdicts if v.account is not None and not v.declined]
    licensed = [v for v in candidates if v.licensed]
    if not app.roster.entries:
        return _Nobody("there are no dermatologists on the roster", True)
    if not licensed:
        where = f"licensed in {state}" if state else "with an approved account"
        return _Nobody(f"no {other}dermatologist on the roster is {where}", True)
    if any(v.on_duty for v in licensed):
        return _Nobody(f"every {other}dermatologist{licensed_in} on duty has reached their "
                       "limit of open cases", False)
    text = f"no {other}dermatologist{licensed_in} is on duty"
    starts = [s for v in licensed if (s := app.roster.next_start(v.entry, at)) is not None]
    if not starts:
        return _Nobody(text, True)
    return _Nobody(f"{text}; the next comes on duty {_when(min(starts), at, app)}", False,
                   min(starts))


def _unlinked(verdicts: list[Verdict]) -> str:
    """Roster entries that would help but have no approved account: an admin can fix that."""
    emails = [v.entry.email for v in verdicts if v.account is None and v.licensed]
    if not emails:
        return ""
    return f"; on the roster without an approved dermatologist account: {', '.join(emails)}"


def explain(app: App, verdicts: list[Verdict], state: str | None, declines: list[Decline],
            at: datetime, deadline: datetime | None) -> Waiting | None:
    """None when someone can take the case now (the next assignment pass will). `deadline`:
    the review deadline while the SLA clock runs, else None."""
    if any(v.able for v in verdicts):
        return None
    parts = [f"declined by {d.name or d.email or 'a dermatologist'}: {in_one_line(d.reason)}"
             for d in declines]
    nobody = _nobody(app, verdicts, state, bool(declines), at)
    parts.append(nobody.text)
    parts[0] = parts[0][0].upper() + parts[0][1:]
    unlinked = _unlinked(verdicts)
    # waiting for someone who comes on duty before the deadline (or after hours, before the
    # clock starts) is expected, not a risk
    late = deadline is not None and (nobody.next_start is None or nobody.next_start >= deadline)
    return Waiting("; ".join(parts) + unlinked, bool(declines) or nobody.lasting or late,
                   nobody.text + unlinked)


def waiting_reasons(app: App, session: Session, case_ids: Iterable[int],
                    at: datetime | None = None) -> dict[int, Waiting]:
    """The reasons of the submitted cases among `case_ids` (a few queries for all of them)."""
    at = at or utcnow()
    rows = session.execute(
        select(Case.id, Account.license_state, Case.sla_running_since, Case.sla_stopped_at,
               Case.sla_deadline)
        .join(Account, Account.id == Case.provider_id)
        .where(Case.id.in_(list(case_ids)), Case.state == CaseState.SUBMITTED)
    ).all()
    if not rows:
        return {}
    staff = Staff.read(app, session)
    declines = declines_of(session, [r.id for r in rows])
    found = {}
    for r in rows:
        ids = {d.author_id for d in declines[r.id] if d.author_id is not None}
        running = r.sla_running_since is not None and r.sla_stopped_at is None
        waiting = explain(app, survey(app, staff, r.license_state, ids, at), r.license_state,
                          declines[r.id], at, r.sla_deadline if running else None)
        if waiting is not None:
            found[r.id] = waiting
    return found


def why_waiting(app: App, session: Session, case: Case) -> Waiting | None:
    return waiting_reasons(app, session, [case.id]).get(case.id)


def leads_and_admins(app: App, session: Session) -> dict[str, Account | None]:
    """Who is told when a case is stuck: the roster's on-call leads and the SLA admins."""
    emails = [e.email for e in app.roster.leads]
    leads = session.execute(
        select(Account).where(Account.email.in_(emails))).scalars() if emails else []
    people: dict[str, Account | None] = {a.email: a for a in leads}
    for email in app.sla.policies.admins:
        people.setdefault(email, None)
    return people


def alarm_if_stuck(app: App, session: Session, case: Case) -> Waiting | None:
    """After a decline left the case with nobody: tell the on-call leads and admins now, in
    the decline's transaction (the emails exist if and only if the decline does)."""
    waiting = why_waiting(app, session, case)
    if waiting is None:
        return None
    due_words = deadline_in_words(case.sla_deadline, utcnow(), app.sla.calendar.timezone) \
        if case.sla_deadline and case.sla_stopped_at is None else ""
    for email, account in leads_and_admins(app, session).items():
        queue(app, session, Email(
            kind="case_stuck", template="case_stuck", to=email, case=case, recipient=account,
            context={"waiting": waiting, "decliner": _last_decliner(session, case),
                     "due_words": due_words},
        ))
    log.warning("case %s was declined and nobody else can take it; leads and admins told",
                case.number)
    return waiting


def _last_decliner(session: Session, case: Case) -> str:
    found = declines_of(session, [case.id])[case.id]
    return (found[-1].name or found[-1].email) if found else ""
