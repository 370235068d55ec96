"""The emails of a case's conversation, each queued in the caller's transaction."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseImage, OutboundMessage, utcnow
from mailflow.outbound.outbox import Email, FileAttachment, queue
from mailflow.parse.fields import field_label
from mailflow.sla.words import deadline_in_words
from mailflow.store.blobs import BlobError
from mailflow.workflow import access, patient_history

log = logging.getLogger(__name__)


def photo_attachments(app: App, images: Sequence[CaseImage]) -> list[FileAttachment]:
    """Review copies (EXIF-free, <= 2048 px), named by position and view."""
    out = []
    for img in images:
        if img.purged_at is not None:  # past its retention: the files are gone
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", img.view.lower()).strip("-")
        data = app.blobs.get(img.review_sha or img.clean_sha)
        kind = "image/jpeg" if img.review_sha else img.clean_content_type
        ext = "jpg" if kind == "image/jpeg" else "png"
        out.append(FileAttachment(f"{img.position}-{slug}.{ext}", kind, data))
    return out


def thread_headers(session: Session, case: Case, to: Account) -> tuple[str, list[str]]:
    """In-Reply-To/References: the last emails of this case to this person, so it threads."""
    ids = (
        session.execute(
            select(OutboundMessage.message_id)
            .where(OutboundMessage.case_id == case.id, OutboundMessage.recipient_id == to.id)
            .order_by(OutboundMessage.id.desc())
            .limit(10)
        )
        .scalars()
        .all()
    )
    refs = list(reversed(ids))
    return (refs[-1] if refs else ""), refs


def send(
    app: App,
    session: Session,
    case: Case,
    to: Account,
    kind: str,
    template: str,
    context: dict[str, Any] | None = None,
    attachments: Sequence[FileAttachment] = (),
    cause: int | None = None,
    automatic: bool = True,
) -> OutboundMessage:
    in_reply_to, refs = thread_headers(session, case, to)
    return queue(
        app,
        session,
        Email(
            kind=kind,
            template=template,
            to=to.email,
            context=context or {},
            case=case,
            recipient=to,
            in_reply_to=in_reply_to,
            references=refs,
            automatic=automatic,
            attachments=attachments,
        ),
        cause_message_id=cause,
    )


def history(case: Case) -> list[tuple[str, str]]:
    return [(field_label(k), v) for k, v in case.form.items() if v]


def notify_dermatologist(app: App, session: Session, case: Case, derm: Account) -> None:
    images = list(case.images)
    settings = app.config.patients

    def visible(other: Case) -> bool:
        return access.may_read(session, derm.role, derm.id, other)

    earlier = patient_history.consults(session, case, visible, settings.earlier_consults)
    rows = patient_history.photo_rows(session, case, visible, settings.earlier_photo_cases)
    beside = [p for row in rows for p in row.earlier] if settings.email_earlier_photos else []
    earlier_files, beside = _earlier_attachments(app, session, case, beside)
    files = [*photo_attachments(app, images), *earlier_files]
    send(
        app,
        session,
        case,
        derm,
        "derm_case",
        "derm_case",
        {
            "history": history(case),
            "photos": [
                {"number": i.position, "view": i.view, "caption": i.caption, "warnings": i.warnings}
                for i in images
            ],
            "provider": case.provider,
            "red_flags": app.sla.policies.red_flags_in(
                "\n".join(str(v) for v in case.form.values())
            ),
            "due_words": deadline_in_words(case.sla_deadline, utcnow(), app.sla.calendar.timezone)
            if case.sla_deadline
            else "",
            "earlier": [
                {"number": c.number, "date": _day(app, c.answered_at or c.received_at),
                 "answered": c.answered_at is not None, "diagnosis": c.diagnosis,
                 "plan": c.plan} for c in earlier],
            "earlier_photos": [
                {"number": p.number, "date": _day(app, p.taken_at), "view": p.view,
                 "file": _earlier_name(app, p)} for p in beside],
        },
        files,
    )


def _day(app: App, at: datetime) -> str:
    """A date as the service's people read it (the calendar's time zone)."""
    return f"{at.astimezone(app.sla.calendar.timezone):%Y-%m-%d}"


def _earlier_name(app: App, photo: patient_history.EarlierPhoto) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", photo.view.lower()).strip("-")
    return f"earlier-{_day(app, photo.taken_at)}-{photo.number}-{photo.position}-{slug}.jpg"


def _earlier_attachments(
    app: App, session: Session, case: Case, photos: Sequence[patient_history.EarlierPhoto],
) -> tuple[list[FileAttachment], list[patient_history.EarlierPhoto]]:
    """The earlier photos of the same place, named by date and case so they sort beside the
    new ones in a mail client (JPEG review copies only: what the report shows), and the photos
    attached. An earlier photo that cannot be read is left out: it is background, and the new
    case must still reach its dermatologist."""
    out, attached = [], []
    for photo in photos:
        image = session.get(CaseImage, photo.image_id)
        if image is None or not image.review_sha:
            continue
        try:
            data = app.blobs.get(image.review_sha)
        except BlobError as exc:
            log.warning("case %s: an earlier photo of case %s left out of the email (%s)",
                        case.number, photo.number, type(exc).__name__)
            continue
        out.append(FileAttachment(_earlier_name(app, photo), "image/jpeg", data))
        attached.append(photo)
    return out, attached
