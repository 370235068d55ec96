"""Admin actions on held messages: reprocess, release (as if trusted), discard."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import InboundMessage, MessageStatus

# Codes an admin may vouch for: the sender is known but could not be verified, or their
# account is not approved yet. Anything else (forgeries, unreadable mail) cannot be released.
RELEASABLE = ("unverified", "not-approved")


class QuarantineError(Exception):
    pass


def _held(session: Session, message_id: int) -> InboundMessage:
    row = session.get(InboundMessage, message_id, with_for_update=True)
    if row is None:
        raise QuarantineError(f"no message {message_id}")
    if row.status != MessageStatus.QUARANTINED:
        raise QuarantineError(f"message {message_id} is {row.status}, not held")
    return row


def release(session: Session, message_id: int, actor: str) -> InboundMessage:
    row = _held(session, message_id)
    if row.reason_code not in RELEASABLE:
        raise QuarantineError(
            f"message {message_id} is held as {row.reason_code}: only "
            f"{' or '.join(RELEASABLE)} messages can be released; reprocess or discard it")
    row.released_by = actor
    row.status = MessageStatus.RECEIVED
    row.attempts = 0
    row.claimed_at = None
    row.not_before = None
    audit.record(session, "message.released", actor=actor, entity="inbound_message",
                 entity_id=row.id, detail={"was": row.reason_code})
    return row
