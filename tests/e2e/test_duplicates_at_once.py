"""Two copies of one message worked on at the same moment (two loops of one worker, or two
workers): the second is a duplicate at once, not a failed attempt retried minutes later.

Made to overlap for certain: the test holds the audit chain's head, which every case and every
outcome writes to, so the first copy waits there with its fingerprint recorded but not
committed, and the second waits on that fingerprint; then the test lets go."""

from __future__ import annotations

from sqlalchemy import select, text

from mailflow.app import App
from mailflow.db.models import AuditHead, InboundMessage, MessageStatus
from mailflow.db.session import ROW_LOCK, transaction
from mailflow.spool import Arrival, spool
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import RunningService, postgres_only
from tests.support.cases import CASES, three_photos
from tests.support.mail import case_email, wait_until


def _waiting_on_locks(app: App) -> int:
    with app.sessions() as session:
        return int(session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


@postgres_only  # row locks and a unique index that waits: SQLite has one writer at a time
def test_the_second_copy_is_a_duplicate_at_once(
    app: App, provider: str, process_pool: AnalysisPool,
) -> None:
    raw = case_email(provider, CASES, photos=three_photos()).as_bytes()
    for _ in range(2):
        spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,),
                           auth_user=provider))
    holder = app.sessions()
    holder.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update(**ROW_LOCK))
    service = RunningService(app, process_pool, ("worker",)).start()
    try:
        wait_until(lambda: _waiting_on_locks(app) >= 2, 60,
                   "both copies to wait: one on the audit head, one on the fingerprint")
    finally:
        holder.rollback()
        holder.close()
    try:
        rows = wait_until(lambda: _final(app), 30, "both copies to reach an outcome")
    finally:
        service.stop()
    assert sorted(r.status for r in rows) == [MessageStatus.DUPLICATE, MessageStatus.PROCESSED]
    duplicate = next(r for r in rows if r.status == MessageStatus.DUPLICATE)
    assert (duplicate.attempts, duplicate.last_error) == (1, "")  # no failed attempt
    assert duplicate.duplicate_of_id == next(r.id for r in rows if r is not duplicate)


def _final(app: App) -> list[InboundMessage] | None:
    with transaction(app.sessions) as session:
        rows = list(session.execute(select(InboundMessage)).scalars())
    done = [r for r in rows if r.status in (MessageStatus.PROCESSED, MessageStatus.DUPLICATE)]
    return rows if len(done) == 2 else None
