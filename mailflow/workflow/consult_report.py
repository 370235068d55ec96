"""Build the consult report of a case from the database and render it (reports/ does the PDF).

Every issue renders the whole record: the history, the conversation that led to the answer,
the first answer, each addendum after it, and the conversation since. Nothing earlier is
overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseNote, Consult, utcnow
from mailflow.db.session import transaction
from mailflow.outbound.outbox import FileAttachment
from mailflow.parse.answer import NAMES
from mailflow.parse.fields import consult_title, field_label
from mailflow.parse.form import LABELS as FORM_LABELS
from mailflow.reports import record
from mailflow.reports.model import ConsultReport, ReportAddendum, ReportComment, ReportPhoto
from mailflow.reports.pdf import render_consult_pdf
from mailflow.workflow.notify import send

log = logging.getLogger(__name__)

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
    )


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


def deliver_pending_reports(app: App, limit: int = 5, instance: str | None = None) -> int:
    """Render each consult whose report is not issued yet, then store it and email it.

    Each report is claimed first (by this process instance), so two workers never render the
    same one. Rendering (wkhtmltopdf, up to its timeout) happens with no write transaction
    open, so it never holds the lock that the SMTP door needs to accept mail.
    """
    with app.sessions() as session:
        pending = session.execute(
            select(Consult.id)
            .where(Consult.pdf_sha == "", Consult.report_attempts < app.config.intake.max_attempts)
            .order_by(Consult.id)
            .limit(limit)
        ).scalars().all()
    done = 0
    for consult_id in pending:
        claim = claim_report(app, consult_id, instance)
        if claim is not None:
            _deliver_one(app, claim)
            done += 1
    return done


@dataclass(frozen=True)
class ReportClaim:
    consult_id: int
    claimed_at: datetime
    instance: str | None  # the process instance holding it (None: only the lease)


def claim_report(app: App, consult_id: int, instance: str | None = None) -> ReportClaim | None:
    """Claim a consult's report for rendering; None when it is issued, given up on, or held by
    someone else (a claim older than `[intake] lease_seconds` is taken over)."""
    now = utcnow()
    lease = timedelta(seconds=app.config.intake.lease_seconds)
    with transaction(app.sessions) as session:
        consult = session.execute(
            select(Consult)
            .where(Consult.id == consult_id, Consult.pdf_sha == "",
                   Consult.report_attempts < app.config.intake.max_attempts,
                   or_(Consult.report_claimed_at.is_(None),
                       Consult.report_claimed_at < now - lease))
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if consult is None:
            return None
        consult.report_claimed_at = now
        consult.report_claimed_by = instance
        return ReportClaim(consult_id, now, instance)


def _held(consult: Consult | None, claim: ReportClaim) -> bool:
    return (consult is not None and consult.report_claimed_at == claim.claimed_at
            and consult.report_claimed_by == claim.instance)


def _deliver_one(app: App, claim: ReportClaim) -> None:
    consult_id = claim.consult_id
    try:
        with app.sessions() as session:  # a read: builds the report's values
            consult = session.get(Consult, consult_id)
            assert consult is not None
            case = session.get(Case, consult.case_id)
            assert case is not None
            report = build(app, session, case)
            password = case.provider.pdf_password or None
        data = render_consult_pdf(report, app.config.templates_dir, password=password)
    except Exception as exc:
        with transaction(app.sessions) as session:
            row = session.get(Consult, consult_id, with_for_update=True)
            if row is not None and _held(row, claim):
                row.report_attempts += 1
                row.report_error = type(exc).__name__  # its text may quote the report
                row.report_claimed_at = row.report_claimed_by = None
        log.error("consult %d: the report could not be rendered (%s)", consult_id,
                  type(exc).__name__)
        return
    with transaction(app.sessions) as session:
        consult = session.get(Consult, consult_id, with_for_update=True)
        if consult is None or consult.pdf_sha or not _held(consult, claim):
            return  # our claim lapsed or was given back: another worker issues it
        consult.report_claimed_at = consult.report_claimed_by = None
        case = session.get(Case, consult.case_id)
        derm = session.get(Account, consult.dermatologist_id)
        assert case is not None and derm is not None
        consult.pdf_sha = app.blobs.put(data)
        consult.report_error = ""
        audit.record(session, "report.issued", case_id=case.id, entity="case",
                     entity_id=case.number,
                     detail={"version": consult.version, "protected": bool(password)})
        issued = IssuedReport(data, bool(password))
        send(app, session, case, case.provider, "consult", "consult_ready", {
            "derm": derm,
            "diagnosis": consult.answer.get("diagnosis", ""),
            "next_step": NEXT_STEP.get(consult.in_person, consult.in_person),
            "sla_met": consult.sla_met,
            "addendum": consult.version > 1,
            "pdf_password_hint": issued.protected,
        }, [issued.attachment(case)], cause=consult.inbound_message_id)
        log.info("consult report for %s issued (version %d)", case.number, consult.version)


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
    audit.record(session, "report.resent", actor=actor, case_id=case.id, entity="case",
                 entity_id=case.number, detail={"version": consult.version})
