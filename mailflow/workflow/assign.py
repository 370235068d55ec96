"""Assignment: a submitted case goes to the on-duty dermatologist with the least open work,
licensed in the provider's state and under their limit; with nobody on duty it waits and the
sweep assigns it at the next opening."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, AccountStatus, Case, CaseNote, CaseState, Role, utcnow
from mailflow.workflow import cases
from mailflow.workflow.notify import notify_dermatologist

log = logging.getLogger(__name__)

OPEN_STATES = (CaseState.ASSIGNED, CaseState.NEEDS_INFO)


def open_load(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Case.assignee_id, func.count())
        .where(Case.state.in_(OPEN_STATES), Case.assignee_id.is_not(None))
        .group_by(Case.assignee_id)
    ).all()
    return {assignee: count for assignee, count in rows}


def declined_by(session: Session, case: Case) -> set[int]:
    rows = session.execute(
        select(CaseNote.author_id).where(CaseNote.case_id == case.id, CaseNote.kind == "decline")
    ).scalars()
    return {r for r in rows if r is not None}


def choose(app: App, session: Session, case: Case, at: datetime) -> Account | None:
    load = open_load(session)
    excluded = declined_by(session, case)
    state = case.provider.license_state
    best: tuple[int, int, Account] | None = None
    for order, entry in enumerate(app.roster.on_duty(at)):
        if state and not entry.licensed_in(state):
            continue
        account = session.execute(
            select(Account).where(Account.email == entry.email)
        ).scalar_one_or_none()
        if (account is None or account.role != Role.DERMATOLOGIST
                or account.status != AccountStatus.APPROVED or account.id in excluded):
            continue
        open_cases = load.get(account.id, 0)
        if open_cases >= entry.max_open:
            continue
        candidate = (open_cases, order, account)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return best[2] if best else None


def try_assign(app: App, session: Session, case: Case, actor: str = "system") -> Account | None:
    """Assign one submitted case now if someone suitable is on duty."""
    derm = choose(app, session, case, utcnow())
    if derm is None:
        return None
    cases.assign(session, case, derm, actor)
    notify_dermatologist(app, session, case, derm)
    log.info("case %s assigned to account %d", case.number, derm.id)
    return derm


def assign_waiting(app: App, session: Session) -> int:
    """The sweep: every submitted case, urgent first, then oldest first."""
    waiting = session.execute(
        select(Case)
        .where(Case.state == CaseState.SUBMITTED)
        .order_by((Case.urgency == "urgent").desc(), Case.submitted_at, Case.id)
        .with_for_update(skip_locked=True)
    ).scalars().all()
    done = 0
    for case in waiting:
        try:
            with session.begin_nested():  # one broken case must not hold up the others
                if try_assign(app, session, case) is not None:
                    done += 1
        except Exception as exc:
            log.error("case %s could not be assigned (%s); it waits for an admin",
                      case.number, type(exc).__name__)
    return done


def assign_by_hand(app: App, session: Session, case: Case, email: str, actor: str) -> Account:
    query = select(Account).where(Account.email == email.strip().lower())
    derm = session.execute(query).scalar_one_or_none()
    if derm is None or derm.role != Role.DERMATOLOGIST:
        raise cases.TransitionError(f"{email} is not a dermatologist's account")
    if derm.status != AccountStatus.APPROVED:
        raise cases.TransitionError(f"{email} is not approved")
    if case.assignee_id == derm.id and case.state in OPEN_STATES:
        return derm
    cases.assign(session, case, derm, actor)
    notify_dermatologist(app, session, case, derm)
    return derm
