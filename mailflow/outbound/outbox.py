"""Queue an email in the outbox, in the caller's transaction (so it exists iff the change does).

The rendered message is DKIM-signed and stored encrypted in the blob store, exactly as it will
leave; the row carries no PHI.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr
from typing import Any

from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.crypto.smime_out import protect_message
from mailflow.db.models import Account, Case, OutboundMessage, utcnow
from mailflow.outbound.render import render_email
from mailflow.outbound.secure import recipient_certificate
from mailflow.sla.words import working_hours_in_words
from mailflow.trust import replyaddr

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class FileAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Email:
    kind: str  # ack, help, rejected, ...: what the dashboard and tests look for
    template: str
    to: str
    context: dict[str, Any] = field(default_factory=dict)
    case: Case | None = None
    recipient: Account | None = None  # who may reply: the reply address is bound to them
    in_reply_to: str = ""
    references: Sequence[str] = ()
    automatic: bool = True  # an automatic reply: Auto-Submitted: auto-replied (RFC 3834)
    attachments: Sequence[FileAttachment] = ()
    reply_to: str = ""  # where a reply should go, when it is not a case's reply address


def one_line(value: str) -> str:
    """Header values never carry CR/LF: defence against header injection."""
    return " ".join(_CONTROL.sub(" ", value).split())


def new_message_id(app: App, case: Case | None) -> str:
    tag = case.number if case is not None else "mailflow"
    return f"<{tag}.{uuid.uuid4().hex}@{app.config.mail.domain}>"


def queue(
    app: App, session: Session, email: Email, cause_message_id: int | None = None
) -> OutboundMessage:
    mail = app.config.mail
    certificate = recipient_certificate(app, session, email.recipient, email.to)
    phi = mail.phi_in_email or certificate is not None  # S/MIME: only they can open it
    context = {
        "config": app.config,
        "case": email.case,
        "recipient": email.recipient,
        "phi": phi,
        "case_url": f"{app.config.web_url}/cases/{email.case.number}" if email.case else "",
        "targets": {  # "2 working hours": what each urgency's review target is, in words
            urgency: working_hours_in_words(policy.target_minutes)
            for urgency, policy in app.sla.policies.policies.items()
        },
        **email.context,
    }
    rendered = render_email(app.config.templates_dir, email.template, context)
    from_addr = app.config.address(mail.cases_local)
    message_id = new_message_id(app, email.case)

    msg = EmailMessage()
    subject = one_line(rendered.subject)
    if email.case is not None and email.case.number not in subject:
        subject = f"[{email.case.number}] {subject}"
    msg["Subject"] = subject
    msg["From"] = formataddr((mail.from_name, from_addr))
    msg["To"] = one_line(email.to)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id
    if email.case is not None and email.recipient is not None:
        msg["Reply-To"] = replyaddr.make(
            app.keys.reply_key, mail.reply_local, mail.domain, email.case.number, email.recipient.id
        )
    elif email.reply_to:
        msg["Reply-To"] = one_line(email.reply_to)
    if email.in_reply_to:
        msg["In-Reply-To"] = one_line(email.in_reply_to)
    refs = [one_line(r) for r in email.references if r]
    if email.in_reply_to and one_line(email.in_reply_to) not in refs:
        refs.append(one_line(email.in_reply_to))
    if refs:
        msg["References"] = " ".join(refs[-20:])
    if email.case is not None:
        msg["X-Mailflow-Case"] = email.case.number
    if email.automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"  # Exchange: no out-of-office back to us
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    # without PHI in email, photos and reports stay behind the sign-in
    for att in email.attachments if phi or email.case is None else ():
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)

    raw = msg.as_bytes(policy=SMTP_POLICY)  # CRLF line ends, as on the wire
    if certificate is not None and app.smime is not None:  # signed, then encrypted to them
        raw = protect_message(raw, app.smime, [certificate])
    if app.dkim is not None:  # signed once, here: every retry sends these very bytes
        raw = app.dkim.sign(raw)
    row = OutboundMessage(
        kind=email.kind,
        case_id=email.case.id if email.case is not None else None,
        cause_message_id=cause_message_id,
        recipient_id=email.recipient.id if email.recipient is not None else None,
        to_addr=one_line(email.to),
        from_addr=from_addr,
        message_id=message_id,
        blob_sha=app.blobs.put(raw, session),
        size=len(raw),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "outbox.queued",
        case_id=row.case_id,
        entity="outbound_message",
        entity_id=row.id,
        detail={"kind": email.kind},
    )
    return row
