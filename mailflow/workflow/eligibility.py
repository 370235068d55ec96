"""Who can take a case now, and why each dermatologist on the roster cannot.

One survey that both the assignment (workflow/assign.py) and the explanation of a waiting case
(workflow/waiting.py) read, so what the overview says can never disagree with what the
assignment does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, AccountStatus, Case, CaseNote, CaseState, Role
from mailflow.sla.roster import RosterEntry


def open_load(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Case.assignee_id, func.count())
        .where(Case.state.in_(CaseState.WITH_DERMATOLOGIST), Case.assignee_id.is_not(None))
        .group_by(Case.assignee_id)
    ).all()
    return {assignee: count for assignee, count in rows}


@dataclass(frozen=True)
class Decline:
    case_id: int
    author_id: int | None
    name: str
    email: str
    reason: str
    at: datetime


def declines_of(session: Session, case_ids: Iterable[int]) -> dict[int, list[Decline]]:
    """Each case's declines, oldest first (one query for any number of cases)."""
    ids = list(case_ids)
    found: dict[int, list[Decline]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = session.execute(
        select(CaseNote, Account.name, Account.email)
        .outerjoin(Account, Account.id == CaseNote.author_id)
        .where(CaseNote.case_id.in_(ids), CaseNote.kind == "decline")
        .order_by(CaseNote.id)
    ).all()
    for note, name, email in rows:
        found[note.case_id].append(Decline(note.case_id, note.author_id, name or "",
                                           email or "", note.body, note.created_at))
    return found


@dataclass(frozen=True)
class Staff:
    """The dermatologists' accounts and open work, read once for any number of cases."""

    accounts: dict[str, Account]  # approved dermatologist accounts of the roster, by email
    load: dict[int, int]

    @classmethod
    def read(cls, app: App, session: Session) -> Staff:
        emails = [e.email for e in app.roster.entries]
        accounts = session.execute(
            select(Account).where(Account.email.in_(emails), Account.role == Role.DERMATOLOGIST,
                                  Account.status == AccountStatus.APPROVED)
        ).scalars() if emails else []
        return cls({a.email: a for a in accounts}, open_load(session))


@dataclass(frozen=True)
class Verdict:
    """One roster entry against one case at one moment."""

    entry: RosterEntry
    account: Account | None  # None: no approved dermatologist account for this roster entry
    open_cases: int
    on_duty: bool
    licensed: bool
    declined: bool

    @property
    def full(self) -> bool:
        return self.open_cases >= self.entry.max_open

    @property
    def able(self) -> bool:
        return (self.on_duty and self.licensed and self.account is not None
                and not self.declined and not self.full)


def survey(app: App, staff: Staff, state: str | None, declined_ids: set[int],
           at: datetime) -> list[Verdict]:
    """Every roster entry, in roster order, judged for a case from a provider in `state`."""
    on_duty = {e.email for e in app.roster.on_duty(at)}
    verdicts = []
    for entry in app.roster.entries:
        account = staff.accounts.get(entry.email)
        verdicts.append(Verdict(
            entry=entry,
            account=account,
            open_cases=staff.load.get(account.id, 0) if account else 0,
            on_duty=entry.email in on_duty,
            licensed=not state or entry.licensed_in(state),
            declined=account is not None and account.id in declined_ids,
        ))
    return verdicts


def best(verdicts: list[Verdict]) -> Account | None:
    """The able dermatologist with the least open work; the roster's order breaks ties."""
    able = [(v.open_cases, i, v.account) for i, v in enumerate(verdicts) if v.able]
    if not able:
        return None
    return min(able, key=lambda t: t[:2])[2]
