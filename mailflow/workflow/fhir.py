"""A case's consult as a FHIR R4 document Bundle, for the provider's EHR (issue #14 item 2).

A Composition first, then the Patient, the Practitioners (provider, dermatologist and anyone
else who wrote in the conversation, with their NPI where we hold one), the ServiceRequest (the
e-consult referral), a Media per photo (the EXIF-free copy we keep), the DiagnosticReport (the
conclusion, ICD-10-CM codes as codings and the PDF as its presentedForm) and the conversation as
Communications. Every reference is a urn:uuid fullUrl of another entry, so the document stands
alone. The dicts are validated by fhir.resources' R4B models (R4B carries Media, which R5 does
not) before anything is handed out. A read: the caller audits it.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import (
    Account,
    Case,
    CaseImage,
    CaseNote,
    CaseState,
    Consult,
    utcnow,
)
from mailflow.parse.answer import icd10_code
from mailflow.workflow.consult_report import NEXT_STEP, THREAD_KINDS, history

ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
CONSULT_NOTE = {"system": LOINC, "code": "11488-4", "display": "Consult note"}
CASE_NUMBERS = "urn:mailflow:case"  # our case numbers, as the referral's identifier system
MEDIA_IMAGE = {"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image",
               "display": "Image"}
MRN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "MR", "display": "Medical record number"}]}
GENDER = {"female": "female", "male": "male", "other": "other"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class NoReport(ValueError):
    """The case has no issued consult report yet, so there is no document to give."""


@dataclass
class _Document:
    """The entries so far, each under its urn:uuid, in the order they go in the Bundle."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, resource: dict[str, Any]) -> dict[str, str]:
        """Add a resource; the reference to it, for the resources that point at it."""
        url = f"urn:uuid:{uuid.uuid4()}"
        self.entries.append({"fullUrl": url, "resource": resource})
        return {"reference": url}


def bundle_json(app: App, session: Session, case: Case) -> str:
    """The validated document Bundle as JSON text (raises NoReport before the first report)."""
    bundle = build(app, session, case)
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 would not take
    return json.dumps(bundle, indent=2)


def build(app: App, session: Session, case: Case) -> dict[str, Any]:
    consults = session.execute(
        select(Consult).where(Consult.case_id == case.id).order_by(Consult.version)
    ).scalars().all()
    issued = [c for c in consults if c.pdf_sha]
    if not issued:
        raise NoReport(f"{case.number} has no consult report yet (it is {case.state})")
    doc = _Document()
    patient = doc.add(_patient(case))
    people = _Practitioners(doc, session)
    provider = people.ref(case.provider)
    derm = people.ref_id(consults[0].dermatologist_id)
    referral = doc.add(_referral(case, patient, provider, derm))
    photos = [doc.add(_media(app, img, patient, referral)) for img in case.images
              if img.purged_at is None]  # past retention the photos are gone (retention.py)
    report = doc.add(_report(app, case, consults, issued[-1], patient, referral, derm, photos))
    thread = [doc.add(_communication(note, patient, referral, people))
              for note in _thread(session, case)]
    sections = [("Referral", [referral]), ("Photos", photos), ("Consult report", [report]),
                ("Conversation", thread)]
    composition = _composition(case, patient, derm, sections)
    now = _instant(utcnow())
    return {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": now,
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": composition},
                  *doc.entries],
    }


class _Practitioners:
    """One Practitioner per account, added the first time someone points at it."""

    def __init__(self, doc: _Document, session: Session) -> None:
        self.doc, self.session = doc, session
        self.refs: dict[int, dict[str, str]] = {}

    def ref(self, account: Account) -> dict[str, str]:
        if account.id not in self.refs:
            self.refs[account.id] = self.doc.add(_practitioner(account))
        return self.refs[account.id]

    def ref_id(self, account_id: int) -> dict[str, str]:
        account = self.session.get(Account, account_id)
        assert account is not None
        return self.ref(account)


def _instant(at: datetime) -> str:
    """FHIR wants a zone on every time; the database may hand UTC back without one."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _patient(case: Case) -> dict[str, Any]:
    patient = case.patient
    name = patient.name if patient else case.form.get("patient_name", "")
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"text": name}]}
    sex = (patient.sex if patient else "") or case.form.get("sex", "")
    if sex in GENDER:
        resource["gender"] = GENDER[sex]
    birth = (patient.date_of_birth or "") if patient else ""
    if _DATE.fullmatch(birth):
        resource["birthDate"] = birth
    if patient and patient.mrn:
        resource["identifier"] = [{"type": MRN_TYPE, "value": patient.mrn}]
    return resource


def _practitioner(account: Account) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "name": [{"text": account.name}],
        "telecom": [{"system": "email", "value": account.email}],
    }
    if account.npi.strip():
        resource["identifier"] = [{"system": NPI, "value": account.npi.strip()}]
    if account.credentials:
        resource["qualification"] = [{"code": {"text": account.credentials}}]
    return resource


def _referral(case: Case, patient: dict[str, str], provider: dict[str, str],
              derm: dict[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": CASE_NUMBERS, "value": case.number}],
        "status": "completed" if case.state == CaseState.CLOSED else "active",
        "intent": "order",
        "priority": "urgent" if case.urgency == "urgent" else "routine",
        "code": {"text": "Teledermatology e-consult"},
        "subject": patient,
        "authoredOn": _instant(case.submitted_at or case.created_at),
        "requester": provider,
        "performer": [derm],
    }
    lines = [f"{label}: {value}" for label, value in history(case.form)]
    if lines:
        resource["note"] = [{"text": "\n".join(lines)}]
    return resource


def _media(app: App, img: CaseImage, patient: dict[str, str],
           referral: dict[str, str]) -> dict[str, Any]:
    title = img.view + (f": {img.caption}" if img.caption else "")
    return {
        "resourceType": "Media",
        "status": "completed",
        "type": {"coding": [MEDIA_IMAGE]},
        "basedOn": [referral],
        "subject": patient,
        "createdDateTime": _instant(img.created_at),
        "width": img.width,
        "height": img.height,
        "content": {
            "contentType": img.clean_content_type,
            "data": _b64(app.blobs.get(img.clean_sha)),  # the stored copy is EXIF-free
            "title": title,
        },
    }


def _report(app: App, case: Case, consults: list[Consult], latest: Consult,
            patient: dict[str, str], referral: dict[str, str], derm: dict[str, str],
            photos: list[dict[str, str]]) -> dict[str, Any]:
    answer = consults[0].answer
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "amended" if latest.version > 1 else "final",
        "code": {"coding": [CONSULT_NOTE], "text": "Teledermatology consult"},
        "basedOn": [referral],
        "subject": patient,
        "issued": _instant(latest.created_at),
        "performer": [derm],
        "conclusion": _conclusion(answer),
        "presentedForm": [{"contentType": "application/pdf",
                           "data": _b64(app.blobs.get(latest.pdf_sha)),
                           "title": f"{case.number}-consult.pdf"}],
    }
    codes = diagnosis_codes(answer)
    if codes:
        resource["conclusionCode"] = codes
    if photos:
        resource["media"] = [{"link": ref} for ref in photos]
    return resource


def _conclusion(answer: dict[str, str]) -> str:
    visit = answer.get("in_person", "")
    parts = [("Diagnosis", answer.get("diagnosis", "")),
             ("Differential", answer.get("differential", "")),
             ("Plan", answer.get("plan", "")),
             ("Follow-up", answer.get("follow_up", "")),
             ("Next step", NEXT_STEP.get(visit, visit))]
    return "\n".join(f"{label}: {value}" for label, value in parts if value)


def diagnosis_codes(answer: dict[str, str]) -> list[dict[str, Any]]:
    """Each ICD-10-CM code the dermatologist wrote, checked for shape again, as a coding; what
    was written in the line but is no code stays as text only."""
    concepts: list[dict[str, Any]] = []
    for written in filter(None, (c.strip() for c in answer.get("icd10", "").split(","))):
        code = icd10_code(written)
        if code is None:
            concepts.append({"text": written})
            continue
        concepts.append({"coding": [{"system": ICD10_CM, "code": code}]})
    concepts += [{"text": t.strip()} for t in answer.get("icd10_text", "").split(";")
                 if t.strip()]
    return concepts


def _thread(session: Session, case: Case) -> list[CaseNote]:
    return list(session.execute(
        select(CaseNote)
        .where(CaseNote.case_id == case.id, CaseNote.kind.in_(THREAD_KINDS),
               CaseNote.author_id.is_not(None))
        .order_by(CaseNote.id)
    ).scalars())


def _communication(note: CaseNote, patient: dict[str, str], referral: dict[str, str],
                   people: _Practitioners) -> dict[str, Any]:
    assert note.author_id is not None
    return {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": [referral],
        "subject": patient,
        "topic": {"text": note.kind.replace("_", " ")},
        "sent": _instant(note.created_at),
        "sender": people.ref_id(note.author_id),
        "payload": [{"contentString": note.body}],
    }


def _composition(case: Case, patient: dict[str, str], derm: dict[str, str],
                 sections: list[tuple[str, list[dict[str, str]]]]) -> dict[str, Any]:
    return {
        "resourceType": "Composition",
        "status": "final",
        "type": {"coding": [CONSULT_NOTE]},
        "subject": patient,
        "date": _instant(utcnow()),
        "author": [derm],
        "title": f"Teledermatology consult {case.number}",
        "section": [{"title": title, "entry": refs} for title, refs in sections if refs],
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
