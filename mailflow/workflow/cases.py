"""Every case state change, each in one function that writes its audit event.

States (DESIGN §4): incomplete -> submitted -> assigned -> (needs_info <-> assigned) -> reviewed
-> follow_up -> closed. `_move` is the only code that assigns Case.state.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import Account, Case, CaseNote, CaseState, Patient, utcnow
from mailflow.sla import clock
from mailflow.store.keys import Keyring
from mailflow.workflow.numbers import next_case_number

S = CaseState
ALLOWED: dict[str | None, set[str]] = {
    None: {S.INCOMPLETE, S.SUBMITTED},
    S.INCOMPLETE: {S.SUBMITTED, S.CLOSED},
    S.SUBMITTED: {S.ASSIGNED, S.CLOSED},
    S.ASSIGNED: {S.NEEDS_INFO, S.REVIEWED, S.SUBMITTED, S.CLOSED},
    S.NEEDS_INFO: {S.ASSIGNED, S.SUBMITTED, S.REVIEWED, S.CLOSED},
    S.REVIEWED: {S.FOLLOW_UP, S.CLOSED},
    S.FOLLOW_UP: {S.CLOSED, S.REVIEWED},
    S.CLOSED: {S.FOLLOW_UP},
}


class TransitionError(Exception):
    pass


def _move(
    session: Session, case: Case, to: str, actor: str, new: bool = False, **detail: Any
) -> None:
    before = None if new else case.state
    if to not in ALLOWED.get(before, set()):
        raise TransitionError(f"{case.number}: cannot go from {before} to {to}")
    case.state = to
    now = utcnow()
    case.updated_at = now
    if to == S.SUBMITTED:
        case.submitted_at = now
    if to == S.CLOSED:
        case.closed_at = now
    session.flush()
    clock.on_transition(session, case, before, to, now)
    audit.record(
        session,
        f"case.{to}",
        actor=actor,
        case_id=case.id,
        entity="case",
        entity_id=case.number,
        detail={"from": before, "to": to, **detail},
    )


def find_or_create_patient(
    session: Session, keys: Keyring, provider: Account, fields: dict[str, str], sex: str
) -> Patient:
    name = fields.get("patient_name", "")
    dob = fields.get("date_of_birth", "")
    lookup = keys.lookup_hash(str(provider.id), name, dob)
    patient = session.execute(
        select(Patient).where(Patient.provider_id == provider.id, Patient.lookup == lookup)
    ).scalar_one_or_none()
    if patient is None:
        patient = Patient(
            provider_id=provider.id,
            name=name,
            date_of_birth=dob or None,
            sex=sex,
            mrn=fields.get("mrn") or None,
            lookup=lookup,
        )
        session.add(patient)
        session.flush()
    return patient


def open_case(
    session: Session,
    *,
    provider: Account,
    form: dict[str, str],
    labels: dict[str, str],
    problems: list[tuple[str, str]],
    missing: list[str],
    urgency: str,
    subject: str,
    actor: str,
) -> Case:
    """A new case: `submitted` when nothing required is missing, else `incomplete`."""
    case = Case(
        number=next_case_number(session),
        provider_id=provider.id,
        urgency=urgency,
        form=form,
        form_labels=labels,
        form_problems=[list(p) for p in problems],
        missing=missing,
        subject=subject,
        state=S.INCOMPLETE,
    )
    session.add(case)
    session.flush()
    case.state = None  # type: ignore[assignment]  # a new case has no state until _move
    _move(
        session,
        case,
        S.SUBMITTED if not missing else S.INCOMPLETE,
        actor,
        missing=len(missing),
        photos_required=3,
    )
    return case


def update_missing(session: Session, case: Case, missing: list[str], actor: str) -> None:
    """Record what is still missing; an incomplete case with nothing missing is submitted."""
    case.missing = missing
    case.updated_at = utcnow()
    if case.state == S.INCOMPLETE and not missing:
        _move(session, case, S.SUBMITTED, actor, completed=True)
    else:
        audit.record(
            session,
            "case.updated",
            actor=actor,
            case_id=case.id,
            entity="case",
            entity_id=case.number,
            detail={"missing": len(missing)},
        )


def add_note(
    session: Session,
    case: Case,
    *,
    author: Account | None,
    kind: str,
    body: str,
    inbound_message_id: int | None,
) -> CaseNote:
    note = CaseNote(
        case_id=case.id,
        author_id=author.id if author else None,
        inbound_message_id=inbound_message_id,
        kind=kind,
        body=body,
    )
    session.add(note)
    case.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        f"note.{kind}",
        actor=author.email if author else "system",
        case_id=case.id,
        entity="case_note",
        entity_id=note.id,
    )
    return note


def touch(case: Case) -> None:
    """A message went either way: the idle-close clock starts again."""
    case.last_activity_at = utcnow()


def assign(session: Session, case: Case, derm: Account, actor: str, **detail: Any) -> None:
    previous = case.assignee_id
    case.assignee_id = derm.id
    case.assignee = derm
    if case.state == S.SUBMITTED:
        _move(session, case, S.ASSIGNED, actor, assignee=derm.id, **detail)
    elif case.state in (S.ASSIGNED, S.NEEDS_INFO):
        case.updated_at = utcnow()
        audit.record(
            session,
            "case.reassigned",
            actor=actor,
            case_id=case.id,
            entity="case",
            entity_id=case.number,
            detail={"from": previous, "to": derm.id, **detail},
        )
    else:
        raise TransitionError(f"{case.number} is {case.state}: it cannot be assigned")


def decline(
    session: Session, case: Case, derm: Account, reason: str, inbound_id: int | None
) -> None:
    add_note(session, case, author=derm, kind="decline", body=reason, inbound_message_id=inbound_id)
    case.assignee_id = None
    case.assignee = None
    _move(session, case, S.SUBMITTED, derm.email, declined_by=derm.id)


def request_info(
    session: Session, case: Case, derm: Account, question: str, inbound_id: int | None
) -> None:
    add_note(
        session, case, author=derm, kind="question", body=question, inbound_message_id=inbound_id
    )
    _move(session, case, S.NEEDS_INFO, derm.email)


def info_received(
    session: Session, case: Case, provider: Account, body: str, inbound_id: int | None
) -> None:
    add_note(
        session,
        case,
        author=provider,
        kind="answer_to_question",
        body=body,
        inbound_message_id=inbound_id,
    )
    _move(session, case, S.ASSIGNED, provider.email)


def reviewed(session: Session, case: Case, derm: Account, version: int) -> None:
    case.reviewed_at = utcnow()
    _move(session, case, S.REVIEWED, derm.email, version=version)


def follow_up(session: Session, case: Case, actor: str) -> None:
    if case.state in (S.REVIEWED, S.CLOSED):
        _move(session, case, S.FOLLOW_UP, actor)


def close(session: Session, case: Case, actor: str, why: str) -> None:
    if case.state != S.CLOSED:
        _move(session, case, S.CLOSED, actor, why=why)
