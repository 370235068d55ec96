"""An email the relay has taken is recorded as sent once, whatever the database does meanwhile.

Found by the chaos test: an email reached the relay twice. Recording it as sent (an audit
event naming its case, written while holding the audit chain's head) deadlocked on
PostgreSQL with the SLA scheduler, which held that case's row FOR UPDATE and waited for the
head; the loser was rolled back and its email, already handed to the relay, sent again.
Rows are now locked FOR NO KEY UPDATE (db.session.ROW_LOCK), which lets a row that refers to
the case be written meanwhile, so that cycle cannot form; and a failed record is made again,
never the send."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Case, OutboundMessage, OutboxStatus, utcnow
from mailflow.db.session import transaction
from mailflow.outbound import delivery
from mailflow.workflow import enforcer
from tests.conftest import postgres_only
from tests.support.cases import CASES, deliver, send_case, three_photos
from tests.support.mail import FULL_FORM, case_email
from tests.support.sink import RelaySink


# row locks are PostgreSQL's; SQLite has one writer at a time
@postgres_only
def test_an_audit_event_naming_a_case_is_written_while_the_scheduler_holds_the_case(
    app: App, provider: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    number = send_case(app, provider)
    with transaction(app.sessions) as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        case.sla_next_due_at = utcnow() - timedelta(minutes=1)  # a warning is due
        case_id = case.id
    holding, release = threading.Event(), threading.Event()

    def fire(*_args: object) -> int:  # the scheduler, mid-warning, holding the case's row
        holding.set()
        release.wait(30)
        return 0

    monkeypatch.setattr(enforcer, "fire", fire)
    scheduler = threading.Thread(target=enforcer.fire_due, args=(app,),
                                 kwargs={"case_ids": [case_id]})
    scheduler.start()
    try:
        assert holding.wait(30)
        with transaction(app.sessions) as session:  # what delivery does once the relay has it
            session.execute(text("SET LOCAL lock_timeout = '5s'"))
            audit.record(session, "outbox.sent", case_id=case_id, entity="outbound",
                         entity_id=1)
    finally:
        release.set()
        scheduler.join(30)
    with app.sessions() as session:
        assert audit.verify(session).ok


def test_a_failed_record_of_a_sent_email_is_made_again_not_the_send(
    app: App, sink: RelaySink, provider: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deliver(app, case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes(), provider,
            CASES)
    real, failures = delivery._audit, []

    def deadlocked_once(session, row, action):  # type: ignore[no-untyped-def]
        if action == "outbox.sent" and not failures:
            failures.append(row.id)
            raise OperationalError("INSERT INTO audit_events", {}, Exception("deadlock detected"))
        return real(session, row, action)

    monkeypatch.setattr(delivery, "_audit", deadlocked_once)
    assert delivery.deliver_due(app) >= 1
    assert failures
    assert len(sink.to(provider)) == 1
    with app.sessions() as session:
        row = session.get(OutboundMessage, failures[0])
        assert row is not None and row.status == OutboxStatus.SENT and row.attempts == 1
