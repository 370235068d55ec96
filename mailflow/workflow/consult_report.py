"""Build the consult report of a case from the database (workflow/report_runner.py renders
and issues it; reports/ does the PDF).

Every issue renders the whole record: the history, the conversation that led to the answer,
the first answer, each addendum after it, and the conversation since. Nothing earlier is
overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseNote, Consult, utcnow
from mailflow.outbound.outbox import FileAttachment
from mailflow.parse.answer import NAMES
from mailflow.parse.fields import consult_title, field_label
from mailflow.parse.form import LABELS as FORM_LABELS
from mailflow.reports import record
from mailflow.reports.model import (
    ConsultReport,
    ReportAddendum,
    ReportComment,
    ReportEarlier,
    ReportPhoto,
)
from mailflow.workflow import patient_history
from mailflow.workflow.notify import send

NEXT_STEP = {
    "not needed": "Manage in primary care",
    "routine": "Routine in-person visit",
    "urgent within 2 weeks": "Urgent in-person visit within 2 weeks",
    "same day": "Same-day in-person visit",
    "": "Manage in primary care",
}
ANSWER_LABELS = NAMES  # the answer's fields under the names the parser knows them by
# The thread in the record: every kind of note but a decline (an internal hand-over the
# provider never sees, as on the case page).
THREAD_KINDS = tuple(record.THREAD_KINDS)
NOT_HISTORY = frozenset({"patient_name", "date_of_birth", "sex", "mrn", "urgency"})


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
    first = consults[0]
    derm = session.get(Account, first.dermatologist_id)
    assert derm is not None
    notes = session.execute(
        select(CaseNote, Account)
        .join(Account, Account.id == CaseNote.author_id)
        .where(CaseNote.case_id == case.id, CaseNote.kind.in_(THREAD_KINDS))
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
        sla_text=_sla_text(case, first),
        urgency=case.urgency,
        history=history(case.form),
        photos=tuple(
            ReportPhoto(img.position, img.view, img.caption,
                        app.blobs.get(img.review_sha or img.clean_sha), tuple(img.warnings))
            for img in case.images
            # photos past their retention are gone from the store (workflow/retention.py)
            if img.purged_at is None and (img.review_sha or img.clean_content_type == "image/jpeg")
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
            ReportAddendum(c.created_at, _name(session, c.dermatologist_id), _as_lines(c.answer),
                           consult_title(c.version))
            for c in consults[1:]
        ),
        comments=tuple(
            ReportComment(note.created_at, author.name, author.role, note.body, note.kind)
            for note, author in notes
        ),
        earlier=earlier(app, session, case),
    )


def earlier(app: App, session: Session, case: Case) -> tuple[ReportEarlier, ...]:
    """The patient's earlier cases for the report's reader, the provider: all of them are
    theirs (a patient record is one provider's)."""
    def visible(other: Case) -> bool:
        return other.provider_id == case.provider_id

    return tuple(
        ReportEarlier(c.number, c.received_at, c.answered_at, c.diagnosis, c.plan)
        for c in patient_history.consults(session, case, visible,
                                          app.config.patients.earlier_consults))


def history(form: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The case form's values in the form's own order, whatever order the provider wrote them
    in: without the patient's identity and the urgency (both in the report's header), the
    reason for referral leads."""
    order = {key: i for i, key in enumerate(FORM_LABELS)}
    keys = sorted((k for k, v in form.items() if v and k not in NOT_HISTORY),
                  key=lambda k: order.get(k, len(order)))
    return tuple((field_label(k), form[k]) for k in keys)


def _minutes(m: float) -> str:
    hours, minutes = divmod(round(m), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _sla_text(case: Case, first: Consult) -> str:
    if first.sla_met is None or case.sla_target_minutes is None:
        return "Review time not measured"
    verb = "Reviewed within" if first.sla_met else "Reviewed after"
    return (f"{verb} {_minutes(case.sla_consumed_minutes)} of business time "
            f"(target {_minutes(case.sla_target_minutes)}, {case.urgency})")


def _name(session: Session, account_id: int) -> str:
    account = session.get(Account, account_id)
    return account.name if account else "?"


def _as_lines(answer: dict[str, str]) -> str:
    """The addendum's fields as 'Label: value' lines, in the order they are written."""
    keys = [k for k in ANSWER_LABELS if k in answer] + [k for k in answer
                                                       if k not in ANSWER_LABELS]
    visit = answer.get("in_person", "")  # named as in the answer above; unsaid stays unsaid
    shown = {**answer, "in_person": NEXT_STEP.get(visit, visit) if visit else ""}
    return "\n".join(f"{ANSWER_LABELS.get(k, k)}: {shown[k]}" for k in keys if shown[k])


def resend_report(app: App, session: Session, case: Case, actor: str) -> None:
    """Send the latest issued report to the provider again (an admin's action, audited)."""
    consult = session.execute(
        select(Consult).where(Consult.case_id == case.id, Consult.pdf_sha != "")
        .order_by(Consult.version.desc()).limit(1)
    ).scalar_one_or_none()
    if consult is None:
        raise ValueError(f"{case.number} has no consult report yet")
    derm = session.get(Account, consult.dermatologist_id)
    issued = IssuedReport(app.blobs.get(consult.pdf_sha), bool(case.provider.pdf_password))
    send(app, session, case, case.provider, "consult_resent", "consult_ready", {
        "derm": derm,
        "diagnosis": consult.answer.get("diagnosis", ""),
        "next_step": NEXT_STEP.get(consult.in_person, consult.in_person),
        "sla_met": consult.sla_met,
        "addendum": consult.version > 1,
        "resent": True,
        "pdf_password_hint": issued.protected,
    }, [issued.attachment(case)])
    audit.case_event(session, case, "report.resent", actor=actor,
                     detail={"version": consult.version})
