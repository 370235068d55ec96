"""The emails of a case's conversation, each queued in the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseImage, OutboundMessage, utcnow
from mailflow.outbound.outbox import Email, FileAttachment, queue
from mailflow.parse.fields import field_label
from mailflow.sla.words import deadline_in_words


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
        },
        photo_attachments(app, images),
    )
