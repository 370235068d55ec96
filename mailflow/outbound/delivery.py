"""Deliver queued email through the relay (or into a maildir), with retries and backoff.

A runner (mailflow/runner.py): a row is claimed (status `sending`, claimed_at) in its own
transaction, sent, then marked `sent`, or put back with the next attempt time
(`retry_schedule_seconds`), or `dead` after the last retry or a permanent (5xx) refusal. The
claim names the process instance that holds it: when that process stops, the row goes back to
the queue at the next start-up or heartbeat of any worker (mailflow/instances.py), and a claim
older than `[outbound] lease_seconds` is taken again as the last resort. So a crash mid-send
loses nothing; at worst the relay sees the message twice, byte for byte the stored one (the
same Message-ID), so the receiver can drop the copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import OutboundMessage, OutboxStatus, utcnow
from mailflow.db.session import transaction
from mailflow.runner import Claim, Failure, Runner
from mailflow.store.tls import client_context

log = logging.getLogger(__name__)

# the relay has the message: a failed record of it is tried again this often before the
# attempt counts as failed (and the message is sent again, at least once)
RECORD_TRIES = 3


class PermanentFailure(Exception):
    pass


class RelayTlsFailure(Exception):
    """TLS to the relay could not be had as configured, so nothing was sent: retried later
    (the cause is the relay's or the configuration's, not the message's). The text is the
    reason the outbox page shows an admin."""


@dataclass(frozen=True)
class EmailClaim(Claim):
    blob_sha: str
    from_addr: str
    to_addr: str


class OutboxRunner(Runner[OutboundMessage, EmailClaim]):
    """Queued emails: send each, then `sent`, back to the queue, or `dead`."""

    name = "outbox"
    model = OutboundMessage
    wake_topics = ("outbox",)
    crashed = "the sending process stopped while delivering it, every time"

    @property
    def max_attempts(self) -> int:
        return len(self.backoff) + 1  # the first try, then one per retry

    @property
    def backoff(self) -> tuple[int, ...]:
        return self.app.config.outbound.retry_schedule_seconds

    @property
    def poll_seconds(self) -> float:
        return self.app.config.outbound.poll_seconds

    def due(self, now: datetime) -> ColumnElement[bool]:
        lease = timedelta(seconds=self.app.config.outbound.lease_seconds)
        return or_(
            (OutboundMessage.status == OutboxStatus.QUEUED)
            & (OutboundMessage.next_attempt_at <= now),
            (OutboundMessage.status == OutboxStatus.SENDING)
            & (OutboundMessage.claimed_at < now - lease),
        )

    def order(self) -> tuple[Any, ...]:
        return (OutboundMessage.next_attempt_at, OutboundMessage.id)

    def take(self, row: OutboundMessage, now: datetime) -> EmailClaim:
        row.status = OutboxStatus.SENDING
        row.claimed_at = now
        row.claimed_by = self.instance
        row.attempts += 1
        return EmailClaim(row.id, now, row.attempts, self.instance, row.blob_sha, row.from_addr,
                          row.to_addr)

    def holds(self, row: OutboundMessage, claim: EmailClaim) -> bool:
        return (row.status == OutboxStatus.SENDING and row.claimed_at == claim.claimed_at
                and row.claimed_by == claim.instance)

    def dispose(self, claim: EmailClaim) -> None:
        _send(self.app, claim, self.app.blobs.get(claim.blob_sha), lambda: self._sent(claim))

    def _sent(self, claim: EmailClaim) -> None:
        """Recorded the moment the relay has taken the message, before QUIT: a process killed
        after this sends nothing again (a kill before it still can: nobody can tell whether
        the relay's 250 arrived). A database error here (a deadlock, a dropped connection) is
        met by recording again, never by sending again."""
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                self._record_sent(claim)
                return
            except OperationalError:
                if attempt == RECORD_TRIES:
                    raise
                log.warning("outbound message %d: recording it as sent failed (attempt %d); "
                            "trying again", claim.id, attempt)

    def _record_sent(self, claim: EmailClaim) -> None:
        with transaction(self.app.sessions) as session:
            row = self.held(session, claim)
            if row is None:
                return  # our claim lapsed or was given back, and another deliverer took it
            row.claimed_by = None
            row.status = OutboxStatus.SENT
            row.sent_at = utcnow()
            row.last_error = ""
            _audit(session, row, "outbox.sent")

    def failure(self, claim: EmailClaim, exc: Exception) -> Failure:
        if isinstance(exc, PermanentFailure):  # a 5xx refusal: no retry will be taken
            return Failure(str(exc), permanent=True)
        if isinstance(exc, RelayTlsFailure):
            return Failure(str(exc))
        return Failure(f"{type(exc).__name__}: {exc}")  # network, TLS, relay 4xx: retry later

    def retry(self, session: Session, row: OutboundMessage, claim: EmailClaim,
              failure: Failure, delay: timedelta) -> None:
        row.claimed_by = None
        row.status = OutboxStatus.QUEUED
        row.last_error = failure.error[:2000]
        row.next_attempt_at = utcnow() + delay
        log.warning("outbound message %d failed (attempt %d), will retry", row.id, row.attempts)

    def give_up(self, session: Session, row: OutboundMessage, claim: EmailClaim,
                failure: Failure) -> None:
        row.claimed_by = None
        row.status = OutboxStatus.DEAD
        row.last_error = failure.error[:2000]
        _audit(session, row, "outbox.dead")
        log.error("outbound message %d is dead after %d attempts", row.id, row.attempts)


def _send(app: App, claim: EmailClaim, raw: bytes, delivered: Callable[[], None]) -> None:
    """Hand the message over; `delivered()` as soon as it is taken, before hanging up (the QUIT
    is a round trip, and a crash during it once meant the message was sent twice)."""
    cfg = app.config.outbound
    if not cfg.relay_host:
        _write_maildir(app.config.path(cfg.maildir_path), raw)
        delivered()
        return
    try:
        smtp = smtplib.SMTP(cfg.relay_host, cfg.relay_port, timeout=cfg.connect_timeout_seconds)
        try:
            if cfg.relay_starttls:
                _starttls(app, smtp)
            if cfg.relay_username:
                smtp.login(cfg.relay_username, cfg.relay_password)
            smtp.sendmail(claim.from_addr, [claim.to_addr], raw)
            delivered()
        finally:
            _hang_up(smtp)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        if 500 <= code < 600:
            raise PermanentFailure(f"{code} {text.decode(errors='replace')}") from exc
        raise
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPConnectError, smtplib.SMTPHeloError):
        raise  # the relay or our credentials are at fault, not this message: retry
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            detail = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise PermanentFailure(f"{exc.smtp_code} {detail}") from exc
        raise


def _hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT, whatever the answer. Not `with smtplib.SMTP(...)`: its exit raises on a QUIT
    answered with anything but 221, so a delivered message was marked dead (a 5xx) or sent
    again (a 4xx), and a TLS failure's reason was replaced by the QUIT's."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()
    smtp.close()


def _starttls(app: App, smtp: smtplib.SMTP) -> None:
    """TLS before anything of the message is said, or RelayTlsFailure: never clear text when
    the configuration asks for TLS."""
    cfg = app.config.outbound
    relay = f"{cfg.relay_host}:{cfg.relay_port}"
    ca_file = app.config.path(cfg.relay_ca_file) if cfg.relay_ca_file else None
    try:
        ctx = client_context(ca_file, cfg.relay_tls_verify)
    except OSError as exc:
        raise _tls_failure(f"the CA file {ca_file} ([outbound] relay_ca_file) cannot be "
                           f"read ({exc.strerror or exc})") from exc
    try:
        smtp.starttls(context=ctx)
    except smtplib.SMTPNotSupportedError as exc:
        raise _tls_failure(f"the relay {relay} does not offer STARTTLS, and [outbound] "
                           "relay_starttls requires it") from exc
    except ssl.SSLCertVerificationError as exc:
        raise _tls_failure(_certificate_problem(exc, cfg.relay_host)) from exc
    except ssl.SSLError as exc:
        raise _tls_failure(f"TLS with the relay {relay} failed ({exc.reason or exc})") from exc
    except smtplib.SMTPResponseException as exc:  # e.g. 454: a relay's trouble, not a refusal
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        raise _tls_failure(f"the relay {relay} refused STARTTLS ({exc.smtp_code} {text})") \
            from exc


def _certificate_problem(exc: ssl.SSLCertVerificationError, host: str) -> str:
    detail = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
        return (f"the relay's certificate is for another host than {host} ({detail}); check "
                "[outbound] relay_host against the names in the relay's certificate")
    if exc.verify_code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID, _CERT_HAS_EXPIRED
        return f"the relay's certificate is out of its validity dates ({detail})"
    return (f"the relay's certificate is not trusted ({detail}); if the relay's certificate "
            "comes from the site's own CA, name that CA's certificate in [outbound] "
            "relay_ca_file")


def _tls_failure(reason: str) -> RelayTlsFailure:
    log.warning("no TLS to the relay, nothing sent: %s", reason)  # names no message or person
    return RelayTlsFailure(f"{reason}; nothing was sent, the message waits for the next try")


def _write_maildir(folder: Path, raw: bytes) -> None:
    """Maildir delivery: tmp/, fsync, rename into new/ (what mailbox.Maildir.add skips).

    The mail is plaintext PHI: files 0600 and folders 0700, whatever the umask, and folders
    made by an older version are tightened too.
    """
    for sub in ("", "tmp", "new", "cur"):
        _private_folder(folder / sub)
    name = f"{time.time_ns()}.{uuid.uuid4().hex}.{socket.gethostname()}"
    tmp = folder / "tmp" / name
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / "new" / name)
    fd = os.open(folder / "new", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def _audit(session: Session, row: OutboundMessage, action: str) -> None:
    audit.record(
        session,
        action,
        case_id=row.case_id,
        entity="outbound_message",
        entity_id=row.id,
        detail={"kind": row.kind, "attempts": row.attempts},
    )


def deliver_due(app: App, limit: int = OutboxRunner.batch, instance: str | None = None) -> int:
    """Deliver what is due now, one claim at a time (a claim never waits behind another's
    slow send and lapses); returns how many were attempted."""
    return OutboxRunner(app, instance).drain(limit)


def retry_now(session: Session, outbound_id: int, actor: str = "cli") -> OutboundMessage:
    row = session.get(OutboundMessage, outbound_id)
    if row is None:
        raise LookupError(f"no outbound message {outbound_id}")
    if row.status == OutboxStatus.SENT:
        raise ValueError(f"outbound message {outbound_id} was already delivered")
    if row.status == OutboxStatus.SENDING:
        raise ValueError(f"outbound message {outbound_id} is being delivered right now")
    row.status = OutboxStatus.QUEUED
    row.next_attempt_at = utcnow()
    row.attempts = 0
    audit.record(
        session,
        "outbox.retry",
        actor=actor,
        case_id=row.case_id,
        entity="outbound_message",
        entity_id=row.id,
    )
    return row
