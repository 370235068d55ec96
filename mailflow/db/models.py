"""The database schema. PHI columns use EncryptedText/EncryptedJSON; nothing else holds PHI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailflow.db.types import EncryptedJSON, EncryptedText, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Role:
    PROVIDER = "provider"
    DERMATOLOGIST = "dermatologist"
    ADMIN = "admin"
    ALL = (PROVIDER, DERMATOLOGIST, ADMIN)


class AccountStatus:
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISABLED = "disabled"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=AccountStatus.PENDING)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    practice: Mapped[str] = mapped_column(String(200), default="")
    npi: Mapped[str] = mapped_column(String(20), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    license_state: Mapped[str] = mapped_column(String(10), default="")
    credentials: Mapped[str] = mapped_column(String(100), default="")
    pdf_password: Mapped[str | None] = mapped_column(EncryptedText)  # providers: protects reports
    # web sign-in's second step (trust/totp.py); None: none. Encrypted: it is a credential.
    totp_secret: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_at: Mapped[datetime | None]


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(EncryptedText)
    date_of_birth: Mapped[str | None] = mapped_column(EncryptedText)
    sex: Mapped[str] = mapped_column(String(10), default="")
    mrn: Mapped[str | None] = mapped_column(EncryptedText)
    lookup: Mapped[str] = mapped_column(String(64), index=True)  # keyed hash: provider+name+dob
    # keyed hash of provider+MRN (None: no MRN): two MRNs that differ are two patients
    mrn_lookup: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An admin merged this record into another (workflow/patients.py): kept, never deleted,
    # so a case naming it later finds the kept record; its cases moved there.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", name="fk_patients_merged_into"))
    merged_at: Mapped[datetime | None]
    merged_by: Mapped[str] = mapped_column(String(320), default="", server_default="")


class CaseState:
    INCOMPLETE = "incomplete"
    SUBMITTED = "submitted"
    ASSIGNED = "assigned"
    NEEDS_INFO = "needs_info"
    REVIEWED = "reviewed"
    FOLLOW_UP = "follow_up"
    CLOSED = "closed"
    ALL = (INCOMPLETE, SUBMITTED, ASSIGNED, NEEDS_INFO, REVIEWED, FOLLOW_UP, CLOSED)
    # The named sets, each defined here only:
    UNANSWERED = (SUBMITTED, ASSIGNED, NEEDS_INFO)  # complete, the dermatologist's answer to come
    WITH_DERMATOLOGIST = (ASSIGNED, NEEDS_INFO)  # on the assignee's desk: counts to their load
    CLOCK_RUNNING = (SUBMITTED, ASSIGNED)  # the review clock runs: warnings and breaches fire


class CaseCounter(Base):
    """The last case number issued in a year: DERM-YYYY-NNNNNN."""

    __tablename__ = "case_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    urgency: Mapped[str] = mapped_column(String(10), default="routine")
    form: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)  # field -> value, as understood
    form_labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # field -> label used
    form_problems: Mapped[list[Any]] = mapped_column(EncryptedJSON, default=list)  # [(field, why)]
    missing: Mapped[list[Any]] = mapped_column(JSON, default=list)  # field keys and view names
    subject: Mapped[str] = mapped_column(EncryptedText, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime | None]  # last message either way: for the idle close
    # The SLA clock (sla/clock.py keeps these; sla_events explains them)
    sla_target_minutes: Mapped[int | None]
    sla_started_at: Mapped[datetime | None]  # the business instant the clock started
    sla_running_since: Mapped[datetime | None]  # start of the current run; None when paused
    sla_consumed_minutes: Mapped[float] = mapped_column(default=0.0, server_default="0")
    sla_deadline: Mapped[datetime | None] = mapped_column(index=True)
    sla_next_due_at: Mapped[datetime | None] = mapped_column(index=True)  # next warning/breach
    sla_next_kind: Mapped[str] = mapped_column(String(20), default="", server_default="")
    sla_stopped_at: Mapped[datetime | None]
    sla_met: Mapped[bool | None]
    sla_calendar_version: Mapped[str] = mapped_column(String(20), default="", server_default="")

    provider: Mapped[Account] = relationship(foreign_keys=[provider_id])
    assignee: Mapped[Account | None] = relationship(foreign_keys=[assignee_id])
    patient: Mapped[Patient | None] = relationship()
    images: Mapped[list[CaseImage]] = relationship(
        back_populates="case", order_by="CaseImage.position"
    )

    # The overview: open cases by deadline, and the breached count, from the index alone
    # (a case row carries its encrypted form; reading 10,000 of them to sort was the cost).
    # Stopped clocks by day: met today and the charts.
    __table_args__ = (
        Index("ix_cases_state_deadline", "state", "sla_deadline"),
        Index("ix_cases_sla_stopped_at", "sla_stopped_at"),
    )


class CaseImage(Base):
    __tablename__ = "case_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    position: Mapped[int] = mapped_column(Integer)
    view: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(EncryptedText)  # file names can carry a patient's name
    caption: Mapped[str] = mapped_column(EncryptedText, default="")
    format: Mapped[str] = mapped_column(String(10))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_sha: Mapped[str] = mapped_column(String(64))
    clean_sha: Mapped[str] = mapped_column(String(64))
    clean_content_type: Mapped[str] = mapped_column(String(40))
    thumbnail_sha: Mapped[str] = mapped_column(String(64))
    review_sha: Mapped[str] = mapped_column(String(64), default="", server_default="")
    warnings: Mapped[list[Any]] = mapped_column(EncryptedJSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the retention purge deleted its photo files (workflow/retention.py); the row stays
    purged_at: Mapped[datetime | None]

    case: Mapped[Case] = relationship(back_populates="images")


class Consult(Base):
    """A dermatologist's answer. Version 1 is the consult; later versions are addenda.

    Nothing is overwritten: an answer to an answered case adds a version and re-issues the PDF.
    """

    __tablename__ = "consults"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    dermatologist_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    version: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)  # the parsed answer fields
    in_person: Mapped[str] = mapped_column(String(30), default="")  # the next step, no PHI
    pdf_sha: Mapped[str] = mapped_column(String(64), default="")  # "": report not yet issued
    report_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    report_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    # the report queue's claim (pdf_sha == ""): one worker renders it at a time
    report_claimed_at: Mapped[datetime | None]
    report_claimed_by: Mapped[str | None] = mapped_column(String(32))  # process_instances.id
    sla_met: Mapped[bool | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("case_id", "version"),
        Index("ix_consults_created_at", "created_at"),  # the charts' window
    )


class SlaEvent(Base):
    """Each step of a case's SLA clock, so any deadline can be explained to the minute.

    `once` is set for warnings and breaches: unique per case, so each fires exactly once even
    with several schedulers and across restarts.
    """

    __tablename__ = "sla_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))  # start pause resume warning breach met ...
    once: Mapped[str | None] = mapped_column(String(20))
    consumed_minutes: Mapped[float] = mapped_column(default=0.0)
    deadline: Mapped[datetime | None]
    calendar_version: Mapped[str] = mapped_column(String(20), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("case_id", "once"),)


class CaseNote(Base):
    """A message on a case's thread kept as text: completions, comments, questions, answers."""

    __tablename__ = "case_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    kind: Mapped[str] = mapped_column(String(20))  # completion | comment | ...
    body: Mapped[str] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageStatus:
    RECEIVED = "received"  # spooled, waiting for the worker
    PROCESSING = "processing"  # claimed by a worker (lease in claimed_at)
    PROCESSED = "processed"  # ended in a case change or a reply
    QUARANTINED = "quarantined"  # held for an admin, with a reason
    DUPLICATE = "duplicate"  # the same message was already processed
    DISCARDED = "discarded"  # an admin discarded it from quarantine
    ALL = (RECEIVED, PROCESSING, PROCESSED, QUARANTINED, DUPLICATE, DISCARDED)


class InboundMessage(Base):
    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(10))  # smtp | imap
    peer: Mapped[str] = mapped_column(String(100), default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    auth_user: Mapped[str] = mapped_column(String(320), default="")
    tls: Mapped[bool] = mapped_column(default=False)
    helo: Mapped[str] = mapped_column(String(255), default="", server_default="")  # SMTP door
    # MX mode: mailflow's own DKIM/SPF/DMARC results (an RFC 8601 Authentication-Results value)
    auth_results: Mapped[str] = mapped_column(Text, default="", server_default="")
    # S/MIME: "S/MIME signed by <email> (<issuer>), encrypted", "" for a plain message
    smime: Mapped[str] = mapped_column(String(500), default="", server_default="")
    blob_sha: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(32))  # process_instances.id
    not_before: Mapped[datetime | None]  # after a failed attempt: back off until then
    released_by: Mapped[str] = mapped_column(String(320), default="", server_default="")
    # an admin attached a held message to the case in case_id (audited): route it there
    attached_by: Mapped[str] = mapped_column(String(320), default="", server_default="")
    # where it came from, when the door can name it: an IMAP URL with UIDVALIDITY and UID
    # (RFC 5092), so a message fetched again after a crash is not spooled twice
    source_ref: Mapped[str | None] = mapped_column(String(500), unique=True)
    processed_at: Mapped[datetime | None]
    route: Mapped[str] = mapped_column(String(30), default="")  # what the router decided
    outcome: Mapped[str] = mapped_column(Text, default="")  # people-readable, no PHI
    reason_code: Mapped[str] = mapped_column(String(40), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    purged_at: Mapped[datetime | None]  # the retention purge deleted its raw bytes

    __table_args__ = (Index("ix_inbound_status_received", "status", "received_at"),)


class MessageFingerprint(Base):
    """One row per distinct message processed: the unique key that makes processing once-only."""

    __tablename__ = "message_fingerprints"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    inbound_message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"))


class OutboxStatus:
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    ALL = (QUEUED, SENDING, SENT, DEAD)


class OutboundMessage(Base):
    __tablename__ = "outbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    cause_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    to_addr: Mapped[str] = mapped_column(String(320))
    from_addr: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(250), unique=True)
    blob_sha: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(32))  # process_instances.id
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]  # the retention purge deleted its raw bytes

    __table_args__ = (Index("ix_outbound_status_next", "status", "next_attempt_at"),)


class ProcessInstance(Base):
    """A running worker process, so that its claims can be given back as soon as it is gone.

    A claim records the instance's id. `machine` says where its pid can be looked up: the same
    boot of the same kernel and the same pid namespace; `pid_start` (the process start time
    from /proc) tells a reused pid from the original. Elsewhere, the heartbeat decides.
    """

    __tablename__ = "process_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, made by the process
    host: Mapped[str] = mapped_column(String(255))
    machine: Mapped[str] = mapped_column(String(100), default="")  # "": pids cannot be checked
    pid: Mapped[int] = mapped_column(Integer)
    pid_start: Mapped[int] = mapped_column(BigInteger, default=0)  # clock ticks after boot
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Hash-chained: hash = sha256(prev_hash + canonical event). Details never hold PHI."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))  # account email, "system", "smtp"...
    action: Mapped[str] = mapped_column(String(60))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    entity: Mapped[str] = mapped_column(String(40), default="")
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row locked by each audit write, so the chain has one order under concurrency."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("id"),)


# The sign-in and web tables are declared beside these (access_models.py), the blob tables in
# blob_models.py, photos on their way up from a phone in upload_models.py, providers' S/MIME
# certificates in smime_models.py. Imported here, every table is on Base.metadata for whoever
# reads it: migrations, backup, restore, key rotation.
from mailflow.db import access_models as _access_models  # noqa: E402, F401
from mailflow.db import blob_models as _blob_models  # noqa: E402, F401
from mailflow.db import smime_models as _smime_models  # noqa: E402, F401
from mailflow.db import upload_models as _upload_models  # noqa: E402, F401
