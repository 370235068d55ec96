"""Admin actions on held messages: reprocess, release (as if trusted), attach to a case,
discard."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import Case, InboundMessage, MessageStatus
from mailflow.db.session import ROW_LOCK
from mailflow.workflow.numbers import find_case

# Codes an admin may vouch for: the sender is known but could not be verified, or their
# account is not approved yet. Anything else (forgeries, unreadable mail) cannot be released.
RELEASABLE = ("unverified", "not-approved")
# Held for what the message is, not for where it was going: attaching cannot fix these.
NOT_ATTACHABLE = ("automatic", "unreadable", "unregistered", "smime-bad-signature",
                  "smime-untrusted", "smime-expired", "smime-signer-mismatch",
                  "smime-not-for-us", "smime-unreadable", "smime-revoked", "smime-weak-hash")


class QuarantineError(Exception):
    pass


class MessageNotFound(QuarantineError):
    pass


def _held(session: Session, message_id: int) -> InboundMessage:
    row = session.get(InboundMessage, message_id, with_for_update=ROW_LOCK)
    if row is None:
        raise MessageNotFound(f"no message {message_id}")
    if row.status != MessageStatus.QUARANTINED:
        raise QuarantineError(f"message {message_id} is {row.status}, not in quarantine")
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


def attach(session: Session, message_id: int, case_number: str, actor: str) -> Case:
    """Process a held message as a message on `case_number`, from its sender (who must be the
    case's provider or its dermatologist: the worker checks, as for any reply)."""
    row = _held(session, message_id)
    if not case_number.strip():
        raise QuarantineError("type the number of the case to attach it to")
    if row.reason_code in NOT_ATTACHABLE:
        raise QuarantineError(f"message {message_id} is held as {row.reason_code}: attaching it "
                              "to a case would not change that; reprocess or discard it")
    case = find_case(session, case_number)
    if case is None:
        raise QuarantineError(f"there is no case {case_number.strip()}")
    row.attached_by = actor
    row.case_id = case.id
    row.status = MessageStatus.RECEIVED
    row.attempts = 0
    row.claimed_at = None
    row.not_before = None
    audit.record(session, "message.attached", actor=actor, entity="inbound_message",
                 entity_id=row.id, case_id=case.id, detail={"was": row.reason_code})
    return case


def reprocess(session: Session, message_id: int, actor: str) -> str:
    """Back to the worker as it is, with a fresh count of attempts (held or discarded only:
    a processed message would be acted on twice). Returns the status it had."""
    row = session.get(InboundMessage, message_id, with_for_update=ROW_LOCK)
    if row is None:
        raise MessageNotFound(f"no message {message_id}")
    if row.status in (MessageStatus.RECEIVED, MessageStatus.PROCESSING):
        raise QuarantineError(f"message {message_id} is {row.status}: it will be processed anyway")
    if row.status in (MessageStatus.PROCESSED, MessageStatus.DUPLICATE):
        raise QuarantineError(f"message {message_id} was already {row.status} ({row.outcome}); "
                              "processing it again would act on it twice")
    previous = row.status
    row.status = MessageStatus.RECEIVED
    row.attempts = 0
    row.claimed_at = None
    row.not_before = None
    audit.record(session, "message.reprocess", actor=actor, entity="inbound_message",
                 entity_id=row.id, case_id=row.case_id, detail={"was": previous})
    return previous


def discard(session: Session, message_id: int, actor: str) -> InboundMessage:
    """End the hold; the row and the raw message are kept for the retention period."""
    row = _held(session, message_id)
    row.status = MessageStatus.DISCARDED
    audit.record(session, "message.discarded", actor=actor, entity="inbound_message",
                 entity_id=row.id, case_id=row.case_id, detail={"was": MessageStatus.QUARANTINED})
    return row
