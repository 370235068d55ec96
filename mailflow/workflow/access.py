"""Who may read a case: the one rule the web's pages, its photos and PDFs, and the patient's
earlier cases shown beside a new one all follow."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.db.models import Case, CaseState, Consult, Role


def may_read(session: Session, role: str, account_id: int, case: Case,
             lead: bool = False) -> bool:
    """Admins: any case. Providers: their own. Dermatologists: the cases assigned to them or
    that they answered; an on-call lead (`lead`, paged about open cases) also any open one;
    and while a case of a patient waits on their answer, that patient's other cases: the
    history a treating dermatologist needs, whoever answered before (decisions.md)."""
    if role == Role.ADMIN:
        return True
    if role == Role.PROVIDER:
        return case.provider_id == account_id
    if role == Role.DERMATOLOGIST:
        if case.assignee_id == account_id or (lead and case.state in CaseState.UNANSWERED):
            return True
        answered = session.execute(  # a case they answered stays theirs to read
            select(func.count()).select_from(Consult)
            .where(Consult.case_id == case.id, Consult.dermatologist_id == account_id)
        ).scalar_one()
        return bool(answered) or _treating(session, account_id, case)
    return False


def _treating(session: Session, account_id: int, case: Case) -> bool:
    """Whether this dermatologist has a case of the same patient on their desk, unanswered."""
    if case.patient_id is None:
        return False
    return bool(session.execute(
        select(func.count()).select_from(Case).where(
            Case.patient_id == case.patient_id, Case.assignee_id == account_id,
            Case.state.in_(CaseState.UNANSWERED))
    ).scalar_one())
