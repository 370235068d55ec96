"""The worker: claim a spooled message, analyse it (in a process pool), route it, commit.

Like Mailman's runner: claim -> work -> commit, and on error roll back and put the message back
with its attempt counted; after `max_attempts` it goes to quarantine with the last error. A
claim names the process instance that holds it: when that process stops, the next start-up or
heartbeat of any worker gives the message back (mailflow/instances.py); a claim whose lease ran
out is taken again as the last resort, so nothing is lost.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import InboundMessage, MessageFingerprint, MessageStatus, utcnow
from mailflow.db.session import transaction
from mailflow.parse.analyze import Analysis
from mailflow.parse.types import ImageLimits, MimeLimits
from mailflow.workflow.assign import assign_waiting
from mailflow.workflow.consult_report import deliver_pending_reports
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.pool import AnalysisPool, BlobAccess, analyze_stored
from mailflow.workflow.review import close_idle
from mailflow.workflow.router import route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    id: int
    claimed_at: datetime
    blob_sha: str
    mail_from: str
    attempts: int
    instance: str | None = None  # the process instance holding it (None: only the lease)


def limits(app: App) -> tuple[MimeLimits, ImageLimits]:
    c = app.config.intake
    return (
        MimeLimits(c.max_depth, c.max_parts, c.max_headers, c.max_decoded_bytes, c.max_attachments),
        ImageLimits(max_pixels=c.max_image_pixels,
                    max_pixels_per_message=c.max_pixels_per_message),
    )


def claim_next(app: App, instance: str | None = None) -> Claim | None:
    now = utcnow()
    lease = timedelta(seconds=app.config.intake.lease_seconds)
    with transaction(app.sessions) as session:
        row = session.execute(
            select(InboundMessage)
            .where(
                or_(
                    (InboundMessage.status == MessageStatus.RECEIVED)
                    & or_(InboundMessage.not_before.is_(None), InboundMessage.not_before <= now),
                    (InboundMessage.status == MessageStatus.PROCESSING)
                    & (InboundMessage.claimed_at < now - lease),
                )
            )
            .order_by(InboundMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if row is None:
            return None
        row.status = MessageStatus.PROCESSING
        row.claimed_at = now
        row.claimed_by = instance
        row.attempts += 1
        return Claim(row.id, now, row.blob_sha, row.mail_from, row.attempts, instance)


def _owned(row: InboundMessage | None, claim: Claim) -> bool:
    return (
        row is not None
        and row.status == MessageStatus.PROCESSING
        and row.claimed_at == claim.claimed_at
        and row.claimed_by == claim.instance
    )


def _give_up(app: App, claim: Claim, error: str) -> None:
    with transaction(app.sessions) as session:
        row = session.get(InboundMessage, claim.id, with_for_update=True)
        if not _owned(row, claim):
            return
        assert row is not None
        row.last_error = error[:4000]
        if claim.attempts >= app.config.intake.max_attempts:
            log.error("message %d quarantined after %d failed attempts", row.id, claim.attempts)
            _finish(
                session,
                row,
                Outcome.hold(
                    "failed",
                    "processing-failed",
                    f"processing failed {claim.attempts} times; last error: {error[:300]}",
                ),
            )
        else:  # back off: a full disk or a busy database needs minutes, not milliseconds
            backoff = app.config.intake.retry_backoff_seconds
            delay = backoff[min(claim.attempts, len(backoff)) - 1] if backoff else 0
            row.status = MessageStatus.RECEIVED
            row.claimed_by = None
            row.not_before = utcnow() + timedelta(seconds=delay)


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


def apply(app: App, claim: Claim, analysis: Analysis) -> Outcome | None:
    """Route and act in one transaction; None when the claim was lost to another worker."""
    with transaction(app.sessions) as session:
        row = session.get(InboundMessage, claim.id, with_for_update=True)
        if not _owned(row, claim):
            return None
        assert row is not None
        row.fingerprint = analysis.fingerprint or row.fingerprint
        seen = session.get(MessageFingerprint, row.fingerprint)
        if seen is not None and seen.inbound_message_id != row.id:
            outcome = Outcome(
                MessageStatus.DUPLICATE,
                "duplicate",
                f"the same message as message {seen.inbound_message_id}; not processed again",
            )
            row.duplicate_of_id = seen.inbound_message_id
            _finish(session, row, outcome)
            return outcome
        if seen is None:
            session.add(MessageFingerprint(fingerprint=row.fingerprint, inbound_message_id=row.id))
            session.flush()
        inbound = Inbound(app=app, session=session, row=row, analysis=analysis)
        outcome = route(inbound)
        row.sender_id = inbound.sender.id if inbound.sender is not None else None
        _finish(session, row, outcome)
        return outcome


def process(app: App, claim: Claim, pool: AnalysisPool | None = None) -> Outcome | None:
    if claim.attempts > app.config.intake.max_attempts:  # it keeps killing whoever works on it
        _give_up(app, claim, "the worker stopped while processing it, every time")
        return None
    try:
        mime_limits, image_limits = limits(app)
        access = BlobAccess(app.blobs.root, app.keys.folder, app.keys.blob_name_key)
        args = (access, claim.blob_sha, claim.mail_from, mime_limits, image_limits)
        analysis = analyze_stored(*args) if pool is None else pool.analyze(*args)
        outcome = apply(app, claim, analysis)
    except IntegrityError:  # a concurrent worker processed the same message: retry
        _give_up(app, claim, "a concurrent change conflicted; retried")
        return None
    except Exception as exc:
        # Exception text can quote message content: the log and the row get its kind and
        # where it happened; the whole traceback only at DEBUG.
        where = _where(exc)
        log.error("message %d failed (attempt %d): %s", claim.id, claim.attempts, where)
        log.debug("message %d traceback", claim.id, exc_info=True)
        _give_up(app, claim, where)
        return None
    if outcome is not None:
        log.info("message %d: %s (%s)", claim.id, outcome.status, outcome.route)
    return outcome


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/mailflow/" in f.filename] or frames
    if not ours:
        return type(exc).__name__
    last = ours[-1]
    return f"{type(exc).__name__} in {Path(last.filename).name}:{last.lineno} ({last.name})"


def drain(app: App, pool: AnalysisPool | None = None, limit: int | None = None,
          instance: str | None = None) -> int:
    """Process every waiting message; returns how many were claimed."""
    done = 0
    while limit is None or done < limit:
        claim = claim_next(app, instance)
        if claim is None:
            break
        process(app, claim, pool)
        done += 1
    return done


def sweep(app: App) -> int:
    """Assign cases waiting for someone on duty; close cases idle past the configured time."""
    with transaction(app.sessions) as session:
        return assign_waiting(app, session) + close_idle(app, session)


def step(app: App, pool: AnalysisPool | None = None, limit: int = 20,
         instance: str | None = None) -> int:
    """One round of the worker: process waiting messages, issue pending consult reports,
    then assign waiting cases and close idle ones."""
    return (drain(app, pool, limit, instance) + deliver_pending_reports(app, instance=instance)
            + sweep(app))
