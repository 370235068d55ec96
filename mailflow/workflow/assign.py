"""Assignment: a submitted case goes to the on-duty dermatologist with the least open work,
licensed in the provider's state and under their limit; with nobody on duty it waits and the
sweep assigns it at the next opening."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, AccountStatus, Case, CaseState, Role, utcnow
from mailflow.db.session import ROW_LOCK
from mailflow.workflow import cases
from mailflow.workflow.eligibility import Decline, Staff, best, declines_of, survey
from mailflow.workflow.notify import notify_dermatologist

log = logging.getLogger(__name__)


class DeclinedBefore(cases.TransitionError):
    """A hand assignment to someone who declined the case: done only when confirmed."""

    def __init__(self, case: Case, derm: Account, decline: Decline) -> None:
        self.name, self.email = derm.name, derm.email  # plain values: outlive the session
        self.decline = decline
        super().__init__(f"{derm.name} <{derm.email}> declined {case.number}: "
                         f"\"{' '.join(decline.reason.split())}\"")


def choose(app: App, session: Session, case: Case, at: datetime) -> Account | None:
    """Who takes the case, decided with the audit chain's head held (the assignment writes
    there next anyway): on PostgreSQL another worker's assignment read before it commits
    would leave a dermatologist over max_open. Nobody able is decided without it (a case
    that waits costs nothing), so a sweep with nobody on duty blocks no other writer."""
    if _best(app, session, case, at) is None:
        return None
    audit.hold_chain(session)
    return _best(app, session, case, at)  # again: others' assignments have committed now


def _best(app: App, session: Session, case: Case, at: datetime) -> Account | None:
    declined = {d.author_id for d in declines_of(session, [case.id])[case.id]}
    return best(survey(app, Staff.read(app, session), case.provider.license_state,
                       {i for i in declined if i is not None}, at))


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
        .with_for_update(skip_locked=True, **ROW_LOCK)
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


def assign_by_hand(app: App, session: Session, case: Case, email: str, actor: str,
                   force: bool = False) -> Account:
    """An admin's assignment. To someone who declined the case it raises DeclinedBefore
    (with their reason) unless `force`: the admin has seen the warning and goes ahead."""
    query = select(Account).where(Account.email == email.strip().lower())
    derm = session.execute(query).scalar_one_or_none()
    if derm is None or derm.role != Role.DERMATOLOGIST:
        raise cases.TransitionError(f"{email} is not a dermatologist's account")
    if derm.status != AccountStatus.APPROVED:
        raise cases.TransitionError(f"{email} is not approved")
    if case.assignee_id == derm.id and case.state in CaseState.WITH_DERMATOLOGIST:
        return derm
    theirs = [d for d in declines_of(session, [case.id])[case.id] if d.author_id == derm.id]
    if theirs and not force:
        raise DeclinedBefore(case, derm, theirs[-1])
    cases.assign(session, case, derm, actor, **({"despite_decline": True} if theirs else {}))
    notify_dermatologist(app, session, case, derm)
    return derm
