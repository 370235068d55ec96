"""The runners (mailflow/runner.py) one by one, through `claim()`/`process()`/`drain()` on the
real database: a dead claimant's work is taken over, a failure backs off and is counted, the
last one shunts the row to its final state with its audit event, and two runners racing one
row process it once. Time moves with time-machine; nothing here polls a server."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import (
    AuditEvent,
    Case,
    Consult,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    ProcessInstance,
    utcnow,
)
from mailflow.db.session import transaction
from mailflow.instances import release_gone, this_process
from mailflow.outbound.delivery import OutboxRunner
from mailflow.spool import Arrival, spool
from mailflow.workflow.report_runner import ReportRunner
from mailflow.workflow.worker import InboundRunner
from tests.conftest import DERMS, PASSWORD, ROOT, make_config
from tests.support.db import answered_case
from tests.support.mail import FULL_FORM, case_email
from tests.support.sink import RelaySink

CASES = "cases@derm.localhost"


def spooled(app: App, provider: str, note: str = "") -> int:
    """A case email as the SMTP door spools it (no photos: the runners are the subject)."""
    raw = case_email(provider, CASES, FULL_FORM + note).as_bytes()
    return spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,),
                              auth_user=provider, tls=True))


def inbound(app: App, message_id: int) -> InboundMessage:
    with app.sessions() as session:
        row = session.get(InboundMessage, message_id)
        assert row is not None
        return row


def outbound(app: App) -> list[OutboundMessage]:
    with app.sessions() as session:
        return list(session.execute(select(OutboundMessage).order_by(OutboundMessage.id))
                    .scalars())


def actions(app: App, entity: str, entity_id: object) -> list[str]:
    with app.sessions() as session:
        return list(session.execute(
            select(AuditEvent.action)
            .where(AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id))
            .order_by(AuditEvent.id)).scalars())


def later(app: App, seconds: float) -> time_machine.travel:
    return time_machine.travel(utcnow() + timedelta(seconds=seconds), tick=False)


def stopped_instance(app: App) -> str:
    """A registered instance whose process has ended (on this machine)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    here = this_process()
    with transaction(app.sessions) as session:
        session.add(ProcessInstance(id="d" * 32, host=here.host, machine=here.machine,
                                    pid=ended.pid, pid_start=here.pid_start,
                                    started_at=utcnow(), heartbeat_at=utcnow()))
    return "d" * 32


# --- inbound ---------------------------------------------------------------------------------


def test_a_stopped_workers_message_is_taken_over_and_processed_once(
    app: App, provider: str
) -> None:
    message_id = spooled(app, provider)
    gone = stopped_instance(app)
    held = InboundRunner(app, instance=gone).claim()
    assert held is not None and held.id == message_id
    live = InboundRunner(app, instance="l" * 32)
    assert live.drain() == 0  # claimed, lease running: left alone
    assert release_gone(app, this_process()) == 1  # its process is gone: given back at once
    assert live.drain() == 1
    row = inbound(app, message_id)
    assert row.status == MessageStatus.PROCESSED and row.attempts == 2
    assert row.claimed_by is None
    held_by_the_dead = InboundRunner(app, instance=gone)
    held_by_the_dead.process(held)  # it comes back to life: its claim is gone, nothing happens
    assert actions(app, "inbound_message", message_id).count("message.processed") == 1


def test_a_failing_message_backs_off_then_is_quarantined_with_its_audit_event(
    app: App, provider: str
) -> None:
    message_id = spooled(app, provider)
    sha = inbound(app, message_id).blob_sha
    blob = next((app.config.storage_dir / "blobs").rglob(sha))
    blob.rename(blob.with_suffix(".away"))  # every analysis fails: the message cannot be read
    runner = InboundRunner(app)
    cfg = app.config.intake
    waited = 0.0
    for attempt in range(1, cfg.max_attempts):
        with later(app, waited):
            assert runner.drain() == 1
            row = inbound(app, message_id)
            assert (row.status, row.attempts) == (MessageStatus.RECEIVED, attempt)
            assert "BlobError" in row.last_error
            backoff = cfg.retry_backoff_seconds[min(attempt, len(cfg.retry_backoff_seconds)) - 1]
            assert row.not_before == utcnow() + timedelta(seconds=backoff)
        with later(app, waited + backoff - 1):
            assert runner.drain() == 0  # backing off
        waited += backoff
    with later(app, waited):
        assert runner.drain() == 1
    row = inbound(app, message_id)
    assert (row.status, row.attempts) == (MessageStatus.QUARANTINED, cfg.max_attempts)
    assert row.reason_code == "processing-failed" and row.claimed_by is None
    assert f"processing failed {cfg.max_attempts} times" in row.outcome
    assert actions(app, "inbound_message", message_id)[-1] == "message.quarantined"
    with later(app, waited + 10 ** 6):
        assert runner.drain() == 0  # final: nobody takes it again


def test_two_workers_racing_for_one_message_process_it_once(app: App, provider: str) -> None:
    message_id = spooled(app, provider)
    claimed = race([InboundRunner(app, instance=c * 32).drain for c in "ab"])
    assert sorted(claimed) == [0, 1]
    assert inbound(app, message_id).status == MessageStatus.PROCESSED
    assert actions(app, "inbound_message", message_id).count("message.processed") == 1


def race(drains: list[Callable[[], int]]) -> list[int]:
    """Run the drains at the same moment on their own threads; what each returned."""
    start = threading.Barrier(len(drains))
    results: list[int] = []

    def run(drain: Callable[[], int]) -> None:
        start.wait()
        results.append(drain())

    threads = [threading.Thread(target=run, args=(d,)) for d in drains]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- outbox ----------------------------------------------------------------------------------


@pytest.fixture
def queued_email(app: App, provider: str) -> OutboundMessage:
    """The acknowledgement of a processed case, queued and not sent yet."""
    spooled(app, provider)
    assert InboundRunner(app).drain() == 1
    (email,) = outbound(app)
    assert email.status == OutboxStatus.QUEUED
    return email


def test_an_email_whose_sender_died_is_taken_over_and_sent(
    app: App, sink: RelaySink, provider: str, queued_email: OutboundMessage
) -> None:
    gone = stopped_instance(app)
    held = OutboxRunner(app, gone).claim()
    assert held is not None and held.id == queued_email.id
    live = OutboxRunner(app, "l" * 32)
    assert live.drain() == 0  # being sent, lease running
    assert release_gone(app, this_process()) == 1
    assert live.drain() == 1
    (email,) = outbound(app)
    assert (email.status, email.attempts, email.claimed_by) == (OutboxStatus.SENT, 2, None)
    assert len(sink.to(provider)) == 1
    assert actions(app, "outbound_message", email.id)[-1] == "outbox.sent"


def test_an_email_whose_sender_hangs_is_taken_over_after_the_lease(
    app: App, sink: RelaySink, provider: str, queued_email: OutboundMessage
) -> None:
    held = OutboxRunner(app, "h" * 32).claim()  # a sender that never comes back
    assert held is not None
    live = OutboxRunner(app, "l" * 32)
    with later(app, app.config.outbound.lease_seconds - 1):
        assert live.drain() == 0
    with later(app, app.config.outbound.lease_seconds + 1):
        assert live.drain() == 1
    (email,) = outbound(app)
    assert (email.status, email.attempts) == (OutboxStatus.SENT, 2)


def test_a_relay_that_keeps_refusing_gets_every_retry_then_the_email_is_dead(
    app: App, sink: RelaySink, provider: str, queued_email: OutboundMessage
) -> None:
    sink.refuse_with = "451 4.3.0 relay busy, try later"
    runner = OutboxRunner(app)
    schedule = app.config.outbound.retry_schedule_seconds
    waited = 0
    for attempt, delay in enumerate(schedule, start=1):
        with later(app, waited):
            assert runner.drain() == 1
            (email,) = outbound(app)
            assert (email.status, email.attempts) == (OutboxStatus.QUEUED, attempt)
            assert "451" in email.last_error
            assert email.next_attempt_at == utcnow() + timedelta(seconds=delay)
            assert runner.drain() == 0  # not due before its retry time
        waited += delay
    with later(app, waited):
        assert runner.drain() == 1
    (email,) = outbound(app)
    assert (email.status, email.attempts) == (OutboxStatus.DEAD, len(schedule) + 1)
    assert actions(app, "outbound_message", email.id)[-1] == "outbox.dead"
    assert sink.to(provider) == []


def test_a_permanent_refusal_is_dead_at_once(
    app: App, sink: RelaySink, provider: str, queued_email: OutboundMessage
) -> None:
    sink.refuse_with = "550 5.1.1 no such mailbox"
    assert OutboxRunner(app).drain() == 1
    (email,) = outbound(app)
    assert (email.status, email.attempts) == (OutboxStatus.DEAD, 1)
    assert email.last_error.startswith("550")
    assert actions(app, "outbound_message", email.id)[-1] == "outbox.dead"


def test_two_senders_racing_for_one_email_send_it_once(
    app: App, sink: RelaySink, provider: str, queued_email: OutboundMessage
) -> None:
    claimed = race([OutboxRunner(app, c * 32).drain for c in "ab"])
    assert sorted(claimed) == [0, 1]
    assert len(sink.to(provider)) == 1


# --- reports ---------------------------------------------------------------------------------


def consult(app: App, consult_id: int) -> Consult:
    with app.sessions() as session:
        row = session.get(Consult, consult_id)
        assert row is not None
        return row


def test_a_stopped_renderers_report_is_taken_over_and_issued_once(
    app: App, provider: str, dermatologists: tuple[str, str]
) -> None:
    consult_id = answered_case(app, provider, dermatologists[0])
    gone = stopped_instance(app)
    assert ReportRunner(app, gone).claim() is not None
    live = ReportRunner(app, "l" * 32)
    assert live.drain() == 0
    assert release_gone(app, this_process()) == 1
    assert live.drain() == 1
    row = consult(app, consult_id)
    assert row.pdf_sha and row.report_claimed_by is None and row.report_attempts == 0
    assert [e.kind for e in outbound(app)] == ["consult"]


def test_two_renderers_racing_for_one_report_issue_it_once(
    app: App, provider: str, dermatologists: tuple[str, str]
) -> None:
    answered_case(app, provider, dermatologists[0])
    claimed = race([ReportRunner(app, c * 32).drain for c in "ab"])
    assert sorted(claimed) == [0, 1]
    assert [e.kind for e in outbound(app)] == ["consult"]


@pytest.fixture
def no_report_template(tmp_path: Path, db_url: str) -> App:
    """An installation whose consult report template is missing: every render fails."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "pdf" / "consult.html.j2").unlink()
    config: Config = make_config(tmp_path, db_url, templates={"path": str(templates)})
    initialise(config)
    return App.open(config)


def test_a_report_that_cannot_be_rendered_is_given_up_after_the_last_attempt(
    no_report_template: App,
) -> None:
    app = no_report_template
    try:
        from mailflow.workflow import accounts

        with transaction(app.sessions) as s:
            accounts.add(s, email="doc@clinic.test", name="Dr Doc", role="provider",
                         password=PASSWORD, approved=True)
            accounts.add(s, email=DERMS[0], name="Dr Derm One", role="dermatologist",
                         password=PASSWORD, approved=True)
        consult_id = answered_case(app, "doc@clinic.test", DERMS[0])
        runner = ReportRunner(app)
        for attempt in range(1, app.config.intake.max_attempts + 1):
            assert runner.drain() == 1  # one attempt a drain: the next at the next turn
            row = consult(app, consult_id)
            assert (row.pdf_sha, row.report_attempts) == ("", attempt)
            assert row.report_error and row.report_claimed_at is None
        assert runner.drain() == 0  # given up: nobody renders it again
        with app.sessions() as session:
            case = session.get(Case, row.case_id)
            assert case is not None
            assert actions(app, "case", case.number)[-1] == "report.failed"
        assert outbound(app) == []
    finally:
        app.close()
