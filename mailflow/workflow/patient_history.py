"""The patient over time, read: a case's earlier cases (date, diagnosis, plan), the earlier
photos of the same body location beside its own (same view, with dates), and a provider's
patients with their cases. Reads only: the callers audit what they show.

Who reads decides what is shown: every function takes `visible`, the reader's rule for one
case (workflow/access.py), so an earlier case the reader may not open is not summarised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.db.models import Case, CaseImage, CaseState, Consult, Patient
from mailflow.parse.views import REQUIRED_VIEWS

Visible = Callable[[Case], bool]

# A case's state as the provider reads it on the portal (no internal words).
PLAIN_STATE = {
    CaseState.INCOMPLETE: "waiting for more from you",
    CaseState.SUBMITTED: "waiting for a dermatologist",
    CaseState.ASSIGNED: "with a dermatologist",
    CaseState.NEEDS_INFO: "the dermatologist asked you a question",
    CaseState.REVIEWED: "answered",
    CaseState.FOLLOW_UP: "answered, still talking",
    CaseState.CLOSED: "closed",
}


@dataclass(frozen=True)
class EarlierConsult:
    case_id: int
    number: str
    received_at: datetime
    answered_at: datetime | None  # None: not answered yet
    state: str
    diagnosis: str
    plan: str


@dataclass(frozen=True)
class EarlierPhoto:
    case_id: int  # the earlier case's
    number: str
    position: int
    view: str
    taken_at: datetime  # when that case's photos came (the case's date)
    image_id: int


@dataclass(frozen=True)
class PhotoRow:
    """One view: this case's photos of it and the earlier ones beside them, newest first."""

    view: str
    positions: tuple[int, ...]
    earlier: tuple[EarlierPhoto, ...]


def _place(text: str) -> str:
    """A body location compared as words: case, punctuation and spacing do not matter."""
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def earlier_cases(session: Session, case: Case, visible: Visible) -> list[Case]:
    """The patient's cases before this one that the reader may see, newest first."""
    if case.patient_id is None:
        return []
    found = session.execute(
        select(Case).where(Case.patient_id == case.patient_id, Case.id < case.id)
        .order_by(Case.id.desc())
    ).scalars().all()
    return [c for c in found if visible(c)]


def _answer(session: Session, case: Case) -> tuple[datetime | None, str, str]:
    """When it was first answered, and the diagnosis and plan as they stand (an addendum that
    restates one replaces it)."""
    consults = session.execute(
        select(Consult).where(Consult.case_id == case.id).order_by(Consult.version)
    ).scalars().all()
    if not consults:
        return None, "", ""
    diagnosis = plan = ""
    for consult in consults:
        diagnosis = consult.answer.get("diagnosis") or diagnosis
        plan = consult.answer.get("plan") or plan
    return consults[0].created_at, diagnosis, plan


def consults(session: Session, case: Case, visible: Visible, limit: int
             ) -> list[EarlierConsult]:
    out = []
    for each in earlier_cases(session, case, visible)[:limit]:
        answered, diagnosis, plan = _answer(session, each)
        out.append(EarlierConsult(each.id, each.number, each.created_at, answered, each.state,
                                  diagnosis, plan))
    return out


def photo_rows(session: Session, case: Case, visible: Visible, max_cases: int
               ) -> list[PhotoRow]:
    """Per view of this case, the same view's photos from the patient's earlier cases of the
    same body location (the form's Location on body), up to `max_cases` of them. Empty when
    no earlier case shows the same place."""
    place = _place(str(case.form.get("location", "")))
    if not place:
        return []
    same_place = [c for c in earlier_cases(session, case, visible)
                  if _place(str(c.form.get("location", ""))) == place][:max_cases]
    if not same_place:
        return []
    earlier = session.execute(
        select(CaseImage).where(CaseImage.case_id.in_([c.id for c in same_place]),
                                CaseImage.purged_at.is_(None))
        .order_by(CaseImage.position)
    ).scalars().all()
    by_case = {c.id: c for c in same_place}
    rows = []
    views = [v for v in REQUIRED_VIEWS if any(i.view == v for i in case.images)]
    for view in views:
        mine = tuple(i.position for i in case.images if i.view == view)
        theirs = tuple(
            EarlierPhoto(i.case_id, by_case[i.case_id].number, i.position, i.view,
                         by_case[i.case_id].created_at, i.id)
            for c in same_place for i in earlier if i.case_id == c.id and i.view == view)
        if theirs:
            rows.append(PhotoRow(view, mine, theirs))
    return rows


@dataclass(frozen=True)
class PatientCase:
    number: str
    received_at: datetime
    state: str
    state_words: str
    diagnosis: str


@dataclass(frozen=True)
class ProviderPatient:
    record: int
    name: str
    date_of_birth: str
    cases: tuple[PatientCase, ...]  # newest first


def of_provider(session: Session, provider_id: int, limit: int) -> list[ProviderPatient]:
    """A provider's patients (records not merged away), the one with the newest case first,
    each with their cases."""
    rows = session.execute(  # the columns only: a case row's form is encrypted, not needed
        select(Case.id, Case.number, Case.created_at, Case.state, Case.patient_id)
        .where(Case.provider_id == provider_id, Case.patient_id.is_not(None))
        .order_by(Case.id.desc())
    ).all()
    grouped: dict[int, list[Any]] = {}
    for case in rows:
        if case.patient_id in grouped or len(grouped) < limit:
            grouped.setdefault(case.patient_id, []).append(case)
    shown = [c.id for cases in grouped.values() for c in cases]
    diagnoses: dict[int, str] = {}
    for consult in session.execute(  # one read for all: an addendum's diagnosis replaces it
        select(Consult).where(Consult.case_id.in_(shown)).order_by(Consult.version)
    ).scalars():
        diagnoses[consult.case_id] = (consult.answer.get("diagnosis")
                                      or diagnoses.get(consult.case_id, ""))
    out = []
    for patient_id, cases in grouped.items():
        patient = session.get(Patient, patient_id)
        assert patient is not None
        out.append(ProviderPatient(
            patient_id, patient.name, patient.date_of_birth or "",
            tuple(PatientCase(c.number, c.created_at, c.state,
                              PLAIN_STATE.get(c.state, c.state), diagnoses.get(c.id, ""))
                  for c in cases)))
    return out
