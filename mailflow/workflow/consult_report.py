"""Build the consult report of a case from the database and render it (reports/ does the PDF).

Every issue renders the whole history: the first answer, each addendum after it, and the
comment thread as an appendix once there is one. Nothing earlier is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseNote, Consult, utcnow
from mailflow.outbound.outbox import FileAttachment
from mailflow.reports.model import ConsultReport, ReportAddendum, ReportComment, ReportPhoto
from mailflow.reports.pdf import render_consult_pdf
from mailflow.workflow.fields import field_label

NEXT_STEP = {
    "not needed": "Manage in primary care",
    "routine": "Routine in-person visit",
    "urgent within 2 weeks": "Urgent in-person visit within 2 weeks",
    "same day": "Same-day in-person visit",
    "": "Manage in primary care",
}
ANSWER_LABELS = {
    "diagnosis": "Diagnosis", "differential": "Differential", "plan": "Plan",
    "follow_up": "Follow-up", "in_person": "In-person visit", "biopsy": "Biopsy",
    "icd10": "ICD-10", "image_quality": "Image quality",
}


@dataclass(frozen=True)
class IssuedReport:
    data: bytes
    protected: bool

    def attachment(self, case: Case) -> FileAttachment:
        return FileAttachment(f"{case.number}-consult.pdf", "application/pdf", self.data)


def build(app: App, session: Session, case: Case) -> ConsultReport:
    consults = session.execute(
        select(Consult).where(Consult.case_id == case.id).order_by(Consult.version)
    ).scalars().all()
    if not consults:
        raise ValueError(f"{case.number} has no consult yet")
    first, latest = consults[0], consults[-1]
    derm = session.get(Account, first.dermatologist_id)
    assert derm is not None
    notes = session.execute(
        select(CaseNote, Account)
        .join(Account, Account.id == CaseNote.author_id)
        .where(CaseNote.case_id == case.id, CaseNote.kind == "comment",
               CaseNote.created_at > first.created_at)
        .order_by(CaseNote.id)
    ).all()
    answer = first.answer
    patient = case.patient
    provider = case.provider
    return ConsultReport(
        case_number=case.number,
        issued_at=utcnow(),
        timezone=str(app.roster.timezone),
        patient_name=patient.name if patient else case.form.get("patient_name", ""),
        date_of_birth=(patient.date_of_birth or "") if patient else "",
        sex=(patient.sex if patient else "") or case.form.get("sex", ""),
        mrn=(patient.mrn or "") if patient else "",
        provider_name=provider.name,
        provider_practice=provider.practice,
        provider_email=provider.email,
        dermatologist_name=derm.name,
        dermatologist_credentials=derm.credentials or "Board-certified dermatologist",
        received_at=case.created_at,
        answered_at=first.created_at,
        sla_met=first.sla_met,
        sla_text="" if first.sla_met is None else "",
        question=case.form.get("question", ""),
        history=tuple((field_label(k), v) for k, v in case.form.items()
                      if v and k not in ("question", "patient_name", "date_of_birth", "sex",
                                         "mrn")),
        photos=tuple(
            ReportPhoto(img.position, img.view, img.caption,
                        app.blobs.get(img.review_sha or img.clean_sha), tuple(img.warnings))
            for img in case.images
            if (img.review_sha or img.clean_content_type == "image/jpeg")
        ),
        diagnosis=answer.get("diagnosis", ""),
        differential=answer.get("differential", ""),
        plan=answer.get("plan", ""),
        tests=answer.get("biopsy", ""),
        icd10=answer.get("icd10", ""),
        next_step=NEXT_STEP.get(answer.get("in_person", ""), answer.get("in_person", "")),
        follow_up=answer.get("follow_up", ""),
        image_quality=answer.get("image_quality", ""),
        addenda=tuple(
            ReportAddendum(c.created_at, _name(session, c.dermatologist_id), _as_lines(c.answer))
            for c in consults[1:]
        ),
        comments=tuple(
            ReportComment(note.created_at, author.name, author.role, note.body)
            for note, author in notes
        ) if latest.version > 1 or notes else (),
    )


def _name(session: Session, account_id: int) -> str:
    account = session.get(Account, account_id)
    return account.name if account else "?"


def _as_lines(answer: dict[str, str]) -> str:
    return "\n".join(f"{ANSWER_LABELS.get(k, k)}: {v}" for k, v in answer.items() if v)


def issue_report(app: App, session: Session, case: Case, actor: str = "system") -> IssuedReport:
    report = build(app, session, case)
    password = case.provider.pdf_password or None
    data = render_consult_pdf(report, app.config.templates_dir, password=password)
    audit.record(session, "report.issued", actor=actor, case_id=case.id, entity="case",
                 entity_id=case.number, detail={"protected": bool(password)})
    return IssuedReport(data, bool(password))
