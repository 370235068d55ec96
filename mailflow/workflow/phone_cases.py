"""The phone page's door into the ordinary mail path: what it sends, written as the email the
provider could have sent, and spooled as the web door (the acknowledgement's link to the page
is made beside the acknowledgement, intake_cases.photo_link).

Photos for a case become a reply to the case's signed reply address; a new case becomes an
email to cases@ with the form's lines. Both are spooled signed in as the provider
(`auth_user`, the password was checked on the web), so the worker handles them like mail
sent with SMTP AUTH: the same photo checks, EXIF removal, duplicate check, routing, case
change with its audit event and acknowledgement. There is no second way into a case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from sqlalchemy import select

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, InboundMessage, MessageStatus, utcnow
from mailflow.db.session import transaction
from mailflow.parse.fields import field_label
from mailflow.parse.form import LABELS
from mailflow.parse.views import plain_view
from mailflow.spool import Arrival, record
from mailflow.trust import replyaddr
from mailflow.workflow.intake_cases import VIEW_PREFIX
from mailflow.workflow.uploads import TOO_BIG, Photo, UploadRefused, take

log = logging.getLogger(__name__)


def form_text(fields: Mapping[str, str]) -> str:
    """The web form's values as the `Label: value` lines the emailed form has (a value's
    blank lines dropped: some fields end at a blank line)."""
    lines = []
    for key in LABELS:
        value = "\n".join(line.rstrip() for line in fields.get(key, "").splitlines()
                          if line.strip())
        if value:
            lines.append(f"{field_label(key)}: {value}")
    return "\n".join(lines) + "\n"


def compose(app: App, provider: Account, to: str, subject: str, body: str,
            photos: list[Photo]) -> bytes:
    message = EmailMessage()
    message["From"] = formataddr((provider.name, provider.email))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid("web", domain=app.config.mail.domain)
    message.set_content(body)
    for photo in photos:
        maintype, _, subtype = photo.content_type.partition("/")
        message.add_attachment(photo.data, maintype=maintype, subtype=subtype,
                               filename=photo.filename,
                               headers=[f"Content-Description: {photo.caption}"])
    return message.as_bytes(policy=SMTP)


def send(app: App, provider_id: int, upload_ids: list[str], case_number: str | None = None,
         fields: Mapping[str, str] | None = None, peer: str = "", tls: bool = False) -> int:
    """Photos for a case (`case_number`) or a new case (`fields`), spooled in the transaction
    that uses the uploads up: the id of the inbound message the worker will handle."""
    mail = app.config.mail
    with transaction(app.sessions) as session:
        provider = session.get(Account, provider_id)
        assert provider is not None
        case = None
        if case_number is not None:
            case = session.execute(select(Case).where(Case.number == case_number)
                                   ).scalar_one_or_none()
            if case is None or case.provider_id != provider.id:
                raise UploadRefused("That case is not one of yours.")
        if len(upload_ids) > app.config.uploads.max_files:
            raise UploadRefused(f"Send at most {app.config.uploads.max_files} photos at once.")
        photos = take(app, session, provider, upload_ids, case.id if case else None)
        if case is not None:
            if not photos:
                raise UploadRefused("Choose at least one photo first.")
            to = replyaddr.make(app.keys.reply_key, mail.reply_local, mail.domain, case.number,
                                provider.id)
            subject, body = f"Photos for case {case.number}", ""
        else:
            to = app.config.address(mail.cases_local)
            subject, body = "New case", form_text(fields or {})
        raw = compose(app, provider, to, subject, body, photos)
        if len(raw) > app.config.smtp.max_message_bytes:  # as the SMTP door would refuse it
            raise UploadRefused(TOO_BIG)
        digest = app.blobs.put(raw, session)
        arrival = Arrival(source="web", raw=raw, peer=peer, mail_from=provider.email,
                          rcpt_to=(to,), auth_user=provider.email, tls=tls)
        row_id = record(session, arrival, digest)
        audit.record(session, "upload.sent", actor=provider.email, entity="inbound_message",
                     entity_id=row_id, case_id=case.id if case else None,
                     detail={"photos": len(photos), "new_case": case is None})
    log.info("web door: %d photos spooled as message %d (%s)", len(photos), row_id,
             case_number or "new case")
    return row_id


def outcome(app: App, provider_id: int, inbound_id: int) -> dict[str, object]:
    """What became of a message the page sent, for the page to say: still being read, or the
    case it went to, its state and what it still needs (plain words, the provider's own)."""
    with app.sessions() as session:
        row = session.get(InboundMessage, inbound_id)
        provider = session.get(Account, provider_id)
        # only the provider who sent it may ask: anyone else learns nothing, not even that
        if row is None or provider is None or row.auth_user.lower() != provider.email.lower():
            return {"status": "unknown"}
        if row.status in (MessageStatus.RECEIVED, MessageStatus.PROCESSING):
            return {"status": "waiting"}
        case = session.get(Case, row.case_id) if row.case_id else None
        if row.status != MessageStatus.PROCESSED or case is None:
            return {"status": "held"}
        missing = [plain_view(m[len(VIEW_PREFIX):]) if m.startswith(VIEW_PREFIX)
                   else field_label(m) for m in case.missing]
        return {"status": "done", "case": case.number, "state": case.state,
                "complete": not case.missing, "missing": missing}

