"""The one function every door calls: store the raw message durably, then say yes.

The encrypted blob is fsynced and the inbound_message row committed before this returns; only
then may SMTP answer 250, IMAP move the message, or the web's photo page say "sent". Everything
after is a worker's retryable step. It sits below the doors (intake/ and, through workflow/,
web/), which may not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import InboundMessage
from mailflow.db.session import transaction


@dataclass(frozen=True)
class Arrival:
    source: str  # "smtp" | "imap" | "web"
    raw: bytes
    peer: str = ""
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    auth_user: str = ""
    tls: bool = False
    helo: str = ""  # the name the client gave in HELO/EHLO (SPF checks it in MX mode)
    source_ref: str | None = None  # IMAP: the message's URL with UIDVALIDITY and UID
    extra: dict[str, str] = field(default_factory=dict)


def spool(app: App, arrival: Arrival) -> int:
    digest = app.blobs.put(arrival.raw)
    with transaction(app.sessions) as session:
        return record(session, arrival, digest)


def record(session: Session, arrival: Arrival, digest: str) -> int:
    """The row and its audit event for raw bytes already in the blob store (`digest`), in the
    caller's transaction: the web door spools in the one that also uses up the uploads."""
    row = InboundMessage(
        source=arrival.source,
        peer=arrival.peer[:100],
        mail_from=arrival.mail_from[:320],
        rcpt_to=list(arrival.rcpt_to),
        auth_user=arrival.auth_user,
        tls=arrival.tls,
        helo=arrival.helo[:255],
        blob_sha=digest,
        size=len(arrival.raw),
        fingerprint="",  # computed by the worker: the accept path stays short
        source_ref=arrival.source_ref,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "message.received",
        actor=arrival.auth_user or arrival.source,
        entity="inbound_message",
        entity_id=row.id,
        detail={"source": arrival.source, "size": len(arrival.raw)},
    )
    return row.id
