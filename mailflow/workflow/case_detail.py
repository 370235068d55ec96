"""One case read in full, for people: the read model behind `mailflow cases show` and the web's
case page (web/views.py adds what only the page shows). A read: the caller audits it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.db.models import Account, Case, CaseNote, Consult, InboundMessage, OutboundMessage
from mailflow.parse.fields import field_label


def summary(case: Case) -> dict[str, Any]:
    return {
        "number": case.number,
        "state": case.state,
        "urgency": case.urgency,
        "provider": case.provider.email,
        "assignee": case.assignee.email if case.assignee else None,
        "photos": len(case.images),
        "missing": list(case.missing),
        "created_at": case.created_at,
        "submitted_at": case.submitted_at,
    }


def detail(session: Session, case: Case) -> dict[str, Any]:
    notes = session.execute(
        select(CaseNote, Account.email)
        .outerjoin(Account, Account.id == CaseNote.author_id)
        .where(CaseNote.case_id == case.id)
        .order_by(CaseNote.id)
    ).all()
    inbound = list(session.execute(
        select(InboundMessage).where(InboundMessage.case_id == case.id).order_by(InboundMessage.id)
    ).scalars())
    outbound = session.execute(
        select(OutboundMessage)
        .where(OutboundMessage.case_id == case.id)
        .order_by(OutboundMessage.id)
    ).scalars()
    consults = session.execute(
        select(Consult, Account.email)
        .join(Account, Account.id == Consult.dermatologist_id)
        .where(Consult.case_id == case.id)
        .order_by(Consult.version)
    ).all()
    patient = case.patient
    return {
        **summary(case),
        "patient": {
            "name": patient.name,
            "date_of_birth": patient.date_of_birth,
            "sex": patient.sex,
            "mrn": patient.mrn,
        }
        if patient
        else None,
        # what each message's S/MIME layers proved: "S/MIME signed by a@b (Issuer)", once each
        "smime": list(dict.fromkeys(m.smime for m in inbound if m.smime)),
        "patient_record": case.patient_id,  # P<n>: what `mailflow patients merge` takes
        "fields": dict(case.form),
        "labels": {k: field_label(k) for k in case.form},
        "problems": [{"field": k, "why": why} for k, why in case.form_problems],
        "images": [
            {
                "position": img.position,
                "view": img.view,
                "filename": img.filename,
                "caption": img.caption,
                "format": img.format,
                "width": img.width,
                "height": img.height,
                "warnings": list(img.warnings),
                "content_type": img.clean_content_type,
            }
            for img in case.images
        ],
        "notes": [
            {"kind": n.kind, "author": email, "at": n.created_at, "body": n.body}
            for n, email in notes
        ],
        "consults": [
            {"version": c.version, "dermatologist": email, "at": c.created_at,
             "answer": dict(c.answer), "has_report": bool(c.pdf_sha), "sla_met": c.sla_met}
            for c, email in consults
        ],
        "messages": [
            {"id": m.id, "received_at": m.received_at, "status": m.status, "outcome": m.outcome,
             "smime": m.smime}
            for m in inbound
        ],
        "outbox": [
            {
                "id": o.id,
                "kind": o.kind,
                "to": o.to_addr,
                "status": o.status,
                "created_at": o.created_at,
            }
            for o in outbound
        ],
    }
