"""One provider's patient over time: which record a case's patient is, and an admin's merge of
two records that are the same person.

A record is found by keyed look-ups only (`Keyring.lookup_hash`), never by clear text: the
provider with the name and date of birth (`Patient.lookup`), and the provider with the MRN
(`Patient.mrn_lookup`) when one was given. The rule (docs/decisions.md, "The patient over
time"): name and date of birth must match; an MRN on both sides must match too; an MRN on one
side only does not keep them apart. When that leaves more than one record, none is guessed.
A merged record stays (marked, never deleted) and leads to the record it was merged into.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.crypto.keys import Keyring
from mailflow.db.models import Case, Patient, utcnow
from mailflow.workflow.numbers import CASE_NUMBER, find_case

MAX_HOPS = 50  # a merged record leads to its kept one; a loop is a bug, never followed forever


class MergeError(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    """A patient as the look-ups know them: no clear value here."""

    lookup: str
    mrn_lookup: str | None


def identity(keys: Keyring, provider_id: int, name: str, dob: str | None,
             mrn: str | None) -> Identity:
    return Identity(
        lookup=keys.lookup_hash(str(provider_id), name, dob or ""),
        mrn_lookup=keys.lookup_hash(str(provider_id), "mrn", mrn) if mrn else None,
    )


def kept(session: Session, patient: Patient) -> Patient:
    """The record a patient's cases are on: itself, or the one it was merged into."""
    for _ in range(MAX_HOPS):
        if patient.merged_into_id is None:
            return patient
        target = session.get(Patient, patient.merged_into_id)
        assert target is not None
        patient = target
    raise MergeError(f"patient record {patient.id} is merged in a loop")


def find_record(session: Session, keys: Keyring, provider_id: int,
                who: Identity) -> Patient | None:
    """The provider's one record for this identity, or None (none, or more than one)."""
    rows = session.execute(
        select(Patient).where(Patient.provider_id == provider_id, Patient.lookup == who.lookup)
        .order_by(Patient.id)
    ).scalars().all()
    for row in rows:  # records from before the MRN had its look-up get one on first use
        if row.mrn and row.mrn_lookup is None:
            row.mrn_lookup = identity(keys, provider_id, "", None, row.mrn).mrn_lookup
    pool = list(rows)
    if who.mrn_lookup is not None:
        same = [r for r in rows if r.mrn_lookup == who.mrn_lookup]
        pool = same or [r for r in rows if r.mrn_lookup is None]
    records = {r.id: r for r in (kept(session, row) for row in pool)}
    return next(iter(records.values())) if len(records) == 1 else None


def in_use(session: Session, patient: Patient, but: Case | None = None) -> bool:
    """Another case names the record, or another record was merged into it."""
    query = select(Case.id).where(Case.patient_id == patient.id)
    if but is not None:
        query = query.where(Case.id != but.id)
    if session.execute(query.limit(1)).first() is not None:
        return True
    merged = select(Patient.id).where(Patient.merged_into_id == patient.id).limit(1)
    return session.execute(merged).first() is not None


# --- merge ------------------------------------------------------------------------------------


@dataclass
class Merged:
    """What a merge did, in words without PHI (the CLI and the web say it)."""

    kept: int
    merged: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)

    def words(self) -> str:
        parts = []
        if self.merged:
            records = ", ".join(f"P{i}" for i in self.merged)
            parts.append(f"merged {records} into P{self.kept}; "
                         f"{len(self.cases)} case(s) moved ({', '.join(self.cases) or 'none'})")
        if self.already:
            parts.append(f"{', '.join(f'P{i}' for i in self.already)} already on P{self.kept}")
        return "; ".join(parts)


def record_named(session: Session, ref: str) -> Patient:
    """A patient record from what an admin has in hand: a case number (its patient) or a
    record number (P12 or 12)."""
    ref = ref.strip()
    if CASE_NUMBER.match(ref.upper()):
        case = find_case(session, ref)
        if case is None:
            raise MergeError(f"no case {ref}")
        if case.patient is None:
            raise MergeError(f"{case.number} has no patient record yet")
        return case.patient
    digits = ref[1:] if ref[:1] in ("P", "p") else ref
    patient = session.get(Patient, int(digits)) if digits.isdigit() else None
    if patient is None:
        raise MergeError(f"no patient record {ref} (give a case number or P<number>)")
    return patient


def merge(session: Session, keep: Patient, others: list[Patient], actor: str) -> Merged:
    """Put the other records' cases on `keep` and mark them merged into it (audited).

    Idempotent: a record already on `keep` is left as it is. Refused across providers (a
    record is one provider's) and when `keep` itself was merged away (name the kept one)."""
    if keep.merged_into_id is not None:
        raise MergeError(f"P{keep.id} was merged into P{kept(session, keep).id}: keep that one")
    for other in others:
        if other.provider_id != keep.provider_id:
            raise MergeError(f"P{other.id} and P{keep.id} belong to different providers: "
                             "a patient record is one provider's, never merged across")
    done = Merged(kept=keep.id)
    now = utcnow()
    for other in others:
        target = kept(session, other)
        if target.id == keep.id:
            done.already.append(other.id)
            continue
        moved = session.execute(
            select(Case).where(Case.patient_id == target.id).order_by(Case.id)
        ).scalars().all()
        for case in moved:
            case.patient_id = keep.id
            case.patient = keep
        session.execute(update(Patient).where(Patient.merged_into_id == target.id)
                        .values(merged_into_id=keep.id))  # no chains to walk later
        for attr in ("sex", "mrn", "date_of_birth"):
            if not getattr(keep, attr) and getattr(target, attr):
                setattr(keep, attr, getattr(target, attr))  # fill what the kept one lacks
                if attr == "mrn":
                    keep.mrn_lookup = target.mrn_lookup
        target.merged_into_id, target.merged_at, target.merged_by = keep.id, now, actor
        session.flush()
        numbers = [c.number for c in moved]
        detail = {"kept": keep.id, "merged": target.id, "cases": numbers}
        audit.record(session, "patient.merged", actor=actor, entity="patient",
                     entity_id=keep.id, detail=detail)
        for case in moved:  # on each moved case's own trail too
            audit.case_event(session, case, "patient.merged", actor=actor, detail=detail)
        done.merged.append(target.id)
        done.cases += numbers
    return done
