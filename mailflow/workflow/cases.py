"""Every case state change, each in one function that writes its audit event.

States (DESIGN §4): incomplete -> submitted -> assigned -> (needs_info <-> assigned) -> reviewed
-> follow_up -> closed. `_move` is the only code that assigns Case.state.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.crypto.keys import Keyring
from mailflow.db.models import Account, Case, CaseNote, CaseState, Patient, utcnow
from mailflow.sla import clock
from mailflow.workflow import patients
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
    audit.case_event(session, case, f"case.{to}", actor=actor,
                     detail={"from": before, "to": to, **detail})


PATIENT_FIELDS = ("patient_name", "date_of_birth", "sex", "mrn")


def record_patient(
    session: Session, keys: Keyring, case: Case, fields: dict[str, str], sex: str, actor: str
) -> Patient | None:
    """The case's patient from the form's patient fields, whenever they arrive.

    The patient is the provider's record found by the keyed look-ups (workflow/patients.py:
    name and date of birth, and the MRN where given). A record only this case uses is
    corrected in place; one shared with the provider's other cases is never edited from one
    case (only what it lacks is filled in) and the case moves to the record that matches
    (found or new). `fields` holds only values fit to keep (a date of birth we could not read
    is not one); `sex` is the recognised word. Changes to a patient already recorded are
    audited by field name.
    """
    name = fields.get("patient_name", "").strip()
    if not name:
        return case.patient  # no patient without a name (the case is incomplete)
    dob = fields.get("date_of_birth", "").strip() or None
    mrn = fields.get("mrn", "").strip() or None
    who = patients.identity(keys, case.provider_id, name, dob, mrn)
    current = case.patient
    target = patients.find_record(session, keys, case.provider_id, who)
    if target is None:
        if current is not None and not patients.in_use(session, current, but=case):
            target = current
        else:
            target = Patient(provider_id=case.provider_id, name=name, sex="", lookup=who.lookup)
            session.add(target)
    shared = target.id is not None and patients.in_use(session, target, but=case)
    wanted = {"name": name, "date_of_birth": dob, "sex": sex or None, "mrn": mrn}
    changed = [attr for attr, value in wanted.items()
               if value is not None and getattr(target, attr) != value
               and not (shared and getattr(target, attr))]
    for attr in changed:
        setattr(target, attr, wanted[attr])
    if not shared:
        target.lookup = who.lookup
    if "mrn" in changed or target.mrn_lookup is None:
        target.mrn_lookup = patients.identity(keys, case.provider_id, "", None,
                                              target.mrn).mrn_lookup
    session.flush()
    case.patient_id = target.id
    case.patient = target
    if current is not None and current is not target and not patients.in_use(session, current):
        session.delete(current)  # a row no case names any more: no PHI left lying about
    if current is not None and (changed or current is not target):
        audit.record(session, "patient.updated", actor=actor, case_id=case.id,
                     entity="patient", entity_id=target.id,
                     detail={"fields": changed, "moved": current is not target})
    return target


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
        audit.case_event(session, case, "case.updated", actor=actor,
                         detail={"missing": len(missing)})


def change_urgency(session: Session, case: Case, urgency: str, actor: str, **detail: Any) -> None:
    """The case's urgency, everywhere it is shown (the form's Urgency line too), and its SLA
    clock re-targeted to the new policy: one change, one audit event (and so one bus event)."""
    before = case.urgency
    if urgency == before:
        return
    now = utcnow()
    case.urgency = urgency
    case.form = {**case.form, "urgency": urgency}
    case.updated_at = now
    session.flush()
    clock.on_urgency(session, case, before, now, f"{before} to {urgency} by {actor}")
    audit.case_event(session, case, "case.urgency", actor=actor,
                     detail={"from": before, "to": urgency, **detail})


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
        audit.case_event(session, case, "case.reassigned", actor=actor,
                         detail={"from": previous, "to": derm.id, **detail})
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
