"""The worker: claim a spooled message, analyse it (in a process pool), route it, commit.

A runner (mailflow/runner.py): on error the message goes back with its attempt counted and a
back-off (`[intake] retry_backoff_seconds`); after `max_attempts` it is quarantined with the
last error. A claim names the process instance that holds it: when that process stops, the
next start-up or heartbeat of any worker gives the message back (mailflow/instances.py); a
claim whose lease (`[intake] lease_seconds`) ran out is taken again as the last resort, so
nothing is lost. Between batches the worker also does the case housekeeping (`sweep`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.crypto.smime import Unwrapped
from mailflow.db.models import InboundMessage, MessageFingerprint, MessageStatus, utcnow
from mailflow.db.session import transaction
from mailflow.parse.analyze import Analysis
from mailflow.parse.types import ImageLimits, MimeLimits
from mailflow.runner import Claim, Failure, Runner, where
from mailflow.trust.dns import DnsUnavailable, Lookup
from mailflow.trust.inbound_auth import Checked, check
from mailflow.workflow.assign import assign_waiting
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.pool import AnalysisPool, blob_access, open_stored
from mailflow.workflow.review import close_idle
from mailflow.workflow.router import route
from mailflow.workflow.uploads import forget_expired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageClaim(Claim):
    blob_sha: str
    mail_from: str
    source: str = ""
    peer: str = ""
    helo: str = ""
    auth_user: str = ""


def limits(app: App) -> tuple[MimeLimits, ImageLimits]:
    c = app.config.intake
    return (
        MimeLimits(c.max_depth, c.max_parts, c.max_headers, c.max_decoded_bytes, c.max_attachments),
        ImageLimits(max_pixels=c.max_image_pixels,
                    max_pixels_per_message=c.max_pixels_per_message),
    )


class InboundRunner(Runner[InboundMessage, MessageClaim]):
    """Spooled messages: analyse, route, record the outcome."""

    name = "worker"
    model = InboundMessage
    wake_topics = ("message",)
    crashed = "the worker stopped while processing it, every time"

    def __init__(self, app: App, pool: AnalysisPool | None = None,
                 instance: str | None = None) -> None:
        super().__init__(app, instance)
        self.pool = pool  # None: analyse in this process (tests, one-off commands)

    @property
    def max_attempts(self) -> int:
        return self.app.config.intake.max_attempts

    @property
    def backoff(self) -> tuple[int, ...]:
        # a full disk or a busy database needs minutes, not milliseconds
        return self.app.config.intake.retry_backoff_seconds

    @property
    def poll_seconds(self) -> float:
        return self.app.config.intake.poll_seconds

    def due(self, now: datetime) -> ColumnElement[bool]:
        lease = timedelta(seconds=self.app.config.intake.lease_seconds)
        return or_(
            (InboundMessage.status == MessageStatus.RECEIVED)
            & or_(InboundMessage.not_before.is_(None), InboundMessage.not_before <= now),
            (InboundMessage.status == MessageStatus.PROCESSING)
            & (InboundMessage.claimed_at < now - lease),
        )

    def take(self, row: InboundMessage, now: datetime) -> MessageClaim:
        row.status = MessageStatus.PROCESSING
        row.claimed_at = now
        row.claimed_by = self.instance
        row.attempts += 1
        return MessageClaim(row.id, now, row.attempts, self.instance, row.blob_sha,
                            row.mail_from, row.source, row.peer, row.helo, row.auth_user)

    def holds(self, row: InboundMessage, claim: MessageClaim) -> bool:
        return (row.status == MessageStatus.PROCESSING and row.claimed_at == claim.claimed_at
                and row.claimed_by == claim.instance)

    def dispose(self, claim: MessageClaim) -> None:
        mime_limits, image_limits = limits(self.app)
        access = blob_access(self.app)
        args = (access, claim.blob_sha, claim.mail_from, mime_limits, image_limits,
                self.app.smime, utcnow())
        opened = open_stored(*args) if self.pool is None else self.pool.run(open_stored, *args)
        analysis = opened.analysis
        # DNS before the transaction: a slow answer must not hold database locks
        checked = own_check(self.app, claim, analysis)
        outcome = self.apply(claim, analysis, checked, opened.smime)
        if outcome is not None:
            log.info("message %d: %s (%s)", claim.id, outcome.status, outcome.route)

    def apply(self, claim: MessageClaim, analysis: Analysis,
              checked: Checked | None = None, smime: Unwrapped | None = None) -> Outcome | None:
        """Route and act in one transaction; None when the claim was lost to another worker."""
        with transaction(self.app.sessions) as session:
            row = self.held(session, claim)
            if row is None:
                return None
            row.fingerprint = analysis.fingerprint or row.fingerprint
            first = _first_of_its_kind(session, row)
            if first != row.id:
                outcome = Outcome(
                    MessageStatus.DUPLICATE,
                    "duplicate",
                    f"the same message as message {first}; not processed again",
                )
                row.duplicate_of_id = first
                _finish(session, row, outcome)
                return outcome
            row.auth_results = checked.header if checked is not None else ""
            row.smime = smime.summary[:500] if smime is not None else ""
            inbound = Inbound(app=self.app, session=session, row=row, analysis=analysis,
                              checked=checked, smime=smime)
            outcome = route(inbound)
            row.sender_id = inbound.sender.id if inbound.sender is not None else None
            _finish(session, row, outcome)
            return outcome

    def failure(self, claim: MessageClaim, exc: Exception) -> Failure:
        if isinstance(exc, IntegrityError):  # a concurrent worker processed the same message
            return Failure("a concurrent change conflicted; retried")
        if isinstance(exc, DnsUnavailable):  # never a pass: the message waits for an answer
            log.warning("message %d: DNS did not answer (%s); it waits", claim.id, exc)
            return Failure(f"DNS did not answer while checking the sender: {exc}")
        # Exception text can quote message content: the log and the row get its kind and
        # where it happened; the whole traceback only at DEBUG.
        failure = Failure(where(exc))
        log.error("message %d failed (attempt %d): %s", claim.id, claim.attempts, failure.error)
        return failure

    def retry(self, session: Session, row: InboundMessage, claim: MessageClaim,
              failure: Failure, delay: timedelta) -> None:
        row.last_error = failure.error[:4000]
        row.status = MessageStatus.RECEIVED
        row.claimed_by = None
        row.not_before = utcnow() + delay

    def give_up(self, session: Session, row: InboundMessage, claim: MessageClaim,
                failure: Failure) -> None:
        row.last_error = failure.error[:4000]
        log.error("message %d quarantined after %d failed attempts", row.id, claim.attempts)
        _finish(session, row, Outcome.hold(
            "failed",
            "processing-failed",
            f"processing failed {claim.attempts} times; last error: {failure.error[:300]}",
        ))

    def step(self) -> int:
        """A batch of messages, then the case housekeeping."""
        return self.drain(self.batch) + sweep(self.app)


def own_check(app: App, claim: MessageClaim, analysis: Analysis) -> Checked | None:
    """MX mode's DKIM/SPF/DMARC check, for mail that nothing else vouches for: not sent with
    SMTP AUTH, not through a trusted relay (whose own results count instead)."""
    trust = app.config.trust
    message = analysis.message
    if not trust.check_dkim_dmarc or claim.auth_user or message is None or not message.from_addr:
        return None
    if claim.peer in trust.trusted_relays and trust.authserv_id:
        return None
    door_saw_server = claim.source == "smtp"  # IMAP's peer is the mail store, not the sender
    return check(
        app.blobs.get(claim.blob_sha),
        from_addr=message.from_addr,
        peer=claim.peer if door_saw_server else "",
        helo=claim.helo if door_saw_server else "",
        mail_from=claim.mail_from,
        lookup=Lookup(trust.dns_resolver, trust.dns_timeout_seconds),
        authserv_id=app.config.smtp.hostname or app.config.mail.domain,
    )


def _first_of_its_kind(session: Session, row: InboundMessage) -> int:
    """The message that came first with this fingerprint: this one, recorded now, or another.

    Two copies of one message can be analysed at the same moment (two loops, two workers).
    On PostgreSQL the second insert waits for the first's commit and then conflicts: inside
    a savepoint, so the copy is a duplicate at once instead of a failed attempt retried later.
    """
    seen = session.get(MessageFingerprint, row.fingerprint)
    if seen is not None:
        return seen.inbound_message_id
    try:
        with session.begin_nested():
            session.add(MessageFingerprint(fingerprint=row.fingerprint,
                                           inbound_message_id=row.id))
    except IntegrityError:
        seen = session.get(MessageFingerprint, row.fingerprint)
        if seen is None:  # not a fingerprint conflict after all
            raise
        return seen.inbound_message_id
    return row.id


def _finish(session: Session, row: InboundMessage, outcome: Outcome) -> None:
    row.status = outcome.status
    row.route = outcome.route
    row.outcome = outcome.text
    row.reason_code = outcome.reason_code
    row.case_id = outcome.case_id
    row.processed_at = utcnow()
    row.claimed_at = None
    row.claimed_by = None
    audit.record(
        session,
        f"message.{outcome.status}",
        case_id=outcome.case_id,
        entity="inbound_message",
        entity_id=row.id,
        detail={"route": outcome.route, "code": outcome.reason_code},
    )


def drain(app: App, pool: AnalysisPool | None = None, limit: int | None = None,
          instance: str | None = None) -> int:
    """Process every waiting message; returns how many were claimed."""
    return InboundRunner(app, pool, instance).drain(limit)


def sweep(app: App) -> int:
    """Assign cases waiting for someone on duty; close cases idle past the configured time;
    delete photo pieces from a phone never sent in time (not only when the next one starts)."""
    with transaction(app.sessions) as session:
        return assign_waiting(app, session) + close_idle(app, session) + forget_expired(session)
