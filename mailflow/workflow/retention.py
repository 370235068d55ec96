"""Retention: raw messages and photos are deleted once their retention time has passed.

The clock starts when the case is closed (an open case, or one reopened, keeps everything);
a message on no case (help, registration, quarantine, duplicates) counts from its receipt.
What goes: the raw bytes of inbound and outbound emails, and every copy of a photo (original,
cleaned, review, thumbnail). Their rows stay, with `purged_at` set, and each purge writes an
audit event naming the case and the kinds purged. What stays: the case record — patient,
form, conversation, consults and the PDF reports — which is the medical record (decisions.md).

Blobs are content-addressed, so one file can serve several rows (the same photo sent twice):
a file is deleted only when no row that is kept still names it, and `BlobStore.discard` keeps
a file that the same bytes arriving again have just touched.

Rows are marked in one transaction with their audit events; files are deleted after it
commits. A crash in between leaves files no row needs; the next run finds and deletes them.
Files that no row names at all (put by a process that stopped before its row committed) are
found by workflow/orphans.py and deleted the same way, after the same grace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.config import RetentionConfig
from mailflow.db.models import (
    AuditHead,
    Case,
    CaseImage,
    CaseState,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    utcnow,
)
from mailflow.db.session import ROW_LOCK, WRITE
from mailflow.workflow.orphans import find as find_orphans
from mailflow.workflow.orphans import named

log = logging.getLogger(__name__)

YEAR = timedelta(days=365.25)
ACTOR = "retention"
# only messages whose handling is over: a waiting or claimed one is still the worker's
FINISHED_INBOUND = (MessageStatus.PROCESSED, MessageStatus.QUARANTINED,
                    MessageStatus.DUPLICATE, MessageStatus.DISCARDED)
FINISHED_OUTBOUND = (OutboxStatus.SENT, OutboxStatus.DEAD)
BATCH = 500


@dataclass
class CasePurge:
    number: str
    raw_messages: int = 0  # inbound emails
    sent_messages: int = 0  # outbound emails as sent
    photos: int = 0


@dataclass
class RetentionReport:
    dry_run: bool
    cases: list[CasePurge] = field(default_factory=list)
    caseless_messages: int = 0  # inbound and outbound emails on no case
    files_deleted: int = 0  # in a dry run: files that would be deleted
    files_kept: int = 0  # named by a purged row, but still needed (shared, or just re-sent)
    orphans: int = 0  # files no row names (a process stopped before its row committed)

    @property
    def empty(self) -> bool:
        return not (self.cases or self.caseless_messages or self.files_deleted or self.orphans)


def cutoffs(config: RetentionConfig, now: datetime) -> tuple[datetime, datetime]:
    """(raw messages, photos): closed or received before these, they are past retention."""
    return now - config.raw_message_years * YEAR, now - config.photo_years * YEAR


def run(app: App, now: datetime | None = None, dry_run: bool = False) -> RetentionReport:
    """Purge what is past retention; with dry_run, only say what would go (nothing changes)."""
    now = now or utcnow()
    config = app.config.retention
    report = RetentionReport(dry_run)
    used_before = (now - timedelta(hours=config.reuse_grace_hours)).timestamp()
    # before the lock below, which every audit write waits for: these read the whole store
    abandoned = app.blobs.sweep_abandoned(used_before, dry_run)  # unfinished writes
    orphans = find_orphans(app, used_before)
    with app.sessions() as session:
        session.connection(execution_options={WRITE: True})
        # one run at a time: a second scheduler waits here, then finds nothing left to do
        session.execute(select(AuditHead).where(AuditHead.id == 1)
                        .with_for_update(**ROW_LOCK)).scalar()
        raw_cutoff, photo_cutoff = cutoffs(config, now)
        _purge_cases(session, report, raw_cutoff, photo_cutoff, now)
        _purge_caseless(session, report, raw_cutoff, now)
        unneeded, kept = _unneeded_files(app, session)
        report.files_kept = kept
        if dry_run:
            report.files_deleted = len(unneeded)
            report.orphans = abandoned + len(orphans)
            session.rollback()
            return report
        if not report.empty or unneeded or orphans or abandoned:
            audit.record(session, "retention.run", actor=ACTOR, detail={
                "cases": len(report.cases), "caseless_messages": report.caseless_messages,
                "files_to_delete": len(unneeded), "files_kept_shared": kept,
                "orphans": abandoned + len(orphans),
                "raw_message_years": config.raw_message_years,
                "photo_years": config.photo_years})
        session.commit()
    report.files_deleted = sum(app.blobs.discard(sha, used_before) for sha in unneeded)
    report.orphans = abandoned + sum(app.blobs.discard(sha, used_before) for sha in orphans)
    log.info("retention: %d cases and %d other messages purged, %d files deleted, "
             "%d files no row named deleted", len(report.cases), report.caseless_messages,
             report.files_deleted, report.orphans)
    return report


def _purge_cases(session: Session, report: RetentionReport, raw_cutoff: datetime,
                 photo_cutoff: datetime, now: datetime) -> None:
    closed = session.execute(
        select(Case.id, Case.number, Case.closed_at)
        .where(Case.state == CaseState.CLOSED, Case.closed_at < max(raw_cutoff, photo_cutoff))
        .order_by(Case.id)
    ).all()
    for case_id, number, closed_at in closed:
        purge = CasePurge(number)
        if closed_at < raw_cutoff:
            purge.raw_messages = _mark(session, InboundMessage, now, InboundMessage.case_id ==
                                       case_id, InboundMessage.status.in_(FINISHED_INBOUND))
            purge.sent_messages = _mark(session, OutboundMessage, now, OutboundMessage.case_id ==
                                        case_id, OutboundMessage.status.in_(FINISHED_OUTBOUND))
        if closed_at < photo_cutoff:
            purge.photos = _mark(session, CaseImage, now, CaseImage.case_id == case_id)
        if not (purge.raw_messages or purge.sent_messages or purge.photos):
            continue  # purged on an earlier run
        report.cases.append(purge)
        if not report.dry_run:
            kinds = [k for k, n in (("raw_messages", purge.raw_messages),
                                    ("sent_messages", purge.sent_messages),
                                    ("photos", purge.photos)) if n]
            audit.record(session, "retention.purged", actor=ACTOR, case_id=case_id,
                         entity="case", entity_id=number, detail={
                             "kinds": kinds, "raw_messages": purge.raw_messages,
                             "sent_messages": purge.sent_messages, "photos": purge.photos,
                             "closed_at": closed_at.isoformat(timespec="seconds")})


def _purge_caseless(session: Session, report: RetentionReport, raw_cutoff: datetime,
                    now: datetime) -> None:
    """Messages on no case count from their receipt (or, sent ones, from their making)."""
    for model, status, at, finished in (
        (InboundMessage, InboundMessage.status, InboundMessage.received_at, FINISHED_INBOUND),
        (OutboundMessage, OutboundMessage.status, OutboundMessage.created_at, FINISHED_OUTBOUND),
    ):
        ids = session.execute(
            select(model.id).where(model.case_id.is_(None), model.purged_at.is_(None),
                                   status.in_(finished), at < raw_cutoff).order_by(model.id)
        ).scalars().all()
        for chunk in _chunks(ids):
            _mark(session, model, now, model.id.in_(chunk))
        report.caseless_messages += len(ids)
        if report.dry_run:
            continue
        for row_id in ids:
            audit.record(session, "retention.purged", actor=ACTOR, entity=model.__tablename__,
                         entity_id=row_id, detail={"kinds": ["raw_messages"], "on_case": False})


def _mark(session: Session, model: type, now: datetime, *where: object) -> int:
    result = session.execute(
        update(model).where(model.purged_at.is_(None), *where)  # type: ignore[attr-defined]
        .values(purged_at=now).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _unneeded_files(app: App, session: Session) -> tuple[list[str], int]:
    """Files named by purged rows that are still on disk: (no kept row needs them, kept)."""
    named = {sha for sha in _purged_shas(session) if sha and app.blobs.exists(sha)}
    needed: set[str] = set()
    ordered = sorted(named)
    for chunk in _chunks(ordered):
        needed |= _still_needed(session, chunk)
    return [sha for sha in ordered if sha not in needed], len(needed)


def _purged_shas(session: Session) -> Iterator[str]:
    yield from session.execute(
        select(InboundMessage.blob_sha).where(InboundMessage.purged_at.is_not(None))).scalars()
    yield from session.execute(
        select(OutboundMessage.blob_sha).where(OutboundMessage.purged_at.is_not(None))).scalars()
    for row in session.execute(
        select(CaseImage.original_sha, CaseImage.clean_sha, CaseImage.review_sha,
               CaseImage.thumbnail_sha).where(CaseImage.purged_at.is_not(None))
    ):
        yield from row


def _still_needed(session: Session, shas: list[str]) -> set[str]:
    """Which of these files a row that is kept still names (every blob column there is)."""
    return named(session, shas, kept_only=True)


def _chunks(items: Iterable[str] | Iterable[int]) -> Iterator[list]:  # type: ignore[type-arg]
    items = list(items)
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]
