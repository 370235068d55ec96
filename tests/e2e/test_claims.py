"""Claims and their holders, on the database: the report queue has a real claim, and a gone
instance's claims (messages, emails being sent, reports) all go back, a live one's never."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import (
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
from mailflow.workflow.report_runner import ReportRunner, deliver_pending_reports
from mailflow.workflow.worker import InboundRunner, drain
from tests.support.cases import CASES, three_photos
from tests.support.db import answered_case
from tests.support.mail import FULL_FORM, case_email


def consult_emails(app: App) -> list[OutboundMessage]:
    with app.sessions() as session:
        return list(session.execute(select(OutboundMessage).where(
            OutboundMessage.kind == "consult")).scalars())


def test_two_workers_never_render_the_same_report(
    app: App, provider: str, dermatologists: tuple[str, str]
) -> None:
    consult_id = answered_case(app, provider, dermatologists[0])
    one, two = ReportRunner(app, "a" * 32), ReportRunner(app, "b" * 32)
    first = one.claim()
    assert first is not None and first.id == consult_id
    assert two.claim() is None  # held: the second worker skips it
    assert deliver_pending_reports(app, instance="b" * 32) == 0
    # the holder is stuck past the lease: the second worker takes over and issues it
    with time_machine.travel(utcnow() + timedelta(seconds=app.config.intake.lease_seconds + 1)):
        second = two.claim()
    assert second is not None
    one.process(first)  # the first worker wakes up and finishes: it no longer holds it
    assert consult_emails(app) == []
    two.process(second)
    assert len(consult_emails(app)) == 1
    with app.sessions() as session:
        consult = session.get(Consult, consult_id)
        assert consult is not None and consult.pdf_sha and consult.report_claimed_by is None
    assert ReportRunner(app, "c" * 32).claim() is None  # issued: nothing left to claim


def register(app: App, instance_id: str, **identity: object) -> None:
    here = this_process()
    values: dict[str, object] = {"host": here.host, "machine": here.machine, "pid": here.pid,
                                 "pid_start": here.pid_start}
    values.update(identity)
    with transaction(app.sessions) as session:
        session.add(ProcessInstance(id=instance_id, started_at=utcnow(), heartbeat_at=utcnow(),
                                    **values))


def test_a_gone_instance_gives_back_every_kind_of_claim_and_a_live_one_keeps_its_own(
    app: App, provider: str, dermatologists: tuple[str, str]
) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    gone, live, remote = "d" * 32, "l" * 32, "r" * 32
    register(app, gone, pid=ended.pid)  # this machine, process ended
    register(app, live)  # this machine, this very process
    register(app, remote, machine="another-boot/pid:[1]", pid=os.getpid())  # beating
    held: dict[str, tuple[int, int]] = {}  # holder -> (message id, outbox id)
    for n, holder in ((1, gone), (2, live), (3, remote)):
        raw = case_email(provider, CASES, FULL_FORM.replace("3 months", f"{n} weeks"),
                         three_photos()).as_bytes()
        spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,),
                           auth_user=provider))
        assert drain(app, limit=1) == 1  # processed: its acknowledgement is queued
        sending = OutboxRunner(app, holder).claim()  # ... and being sent by `holder`
        assert sending is not None
        message_id = spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,),
                                        auth_user=provider))
        claim = InboundRunner(app, instance=holder).claim()  # being processed by `holder`
        assert claim is not None and claim.id == message_id
        held[holder] = (message_id, sending.id)
    consult_id = answered_case(app, provider, dermatologists[0])
    assert ReportRunner(app, gone).claim() is not None

    assert release_gone(app, this_process()) == 3
    with app.sessions() as session:
        def state(model: type[InboundMessage] | type[OutboundMessage], row_id: int
                  ) -> tuple[str | None, str]:
            row = session.get(model, row_id)
            assert row is not None
            return row.claimed_by, row.status

        assert state(InboundMessage, held[gone][0]) == (None, MessageStatus.RECEIVED)
        assert state(OutboundMessage, held[gone][1]) == (None, OutboxStatus.QUEUED)
        for holder in (live, remote):
            assert state(InboundMessage, held[holder][0]) == (holder, MessageStatus.PROCESSING)
            assert state(OutboundMessage, held[holder][1]) == (holder, OutboxStatus.SENDING)
        consult = session.get(Consult, consult_id)
        assert consult is not None and consult.report_claimed_by is None
        assert set(session.execute(select(ProcessInstance.id)).scalars()) == {live, remote}
    # released work is due at once: no lease, no back-off
    assert InboundRunner(app).claim() is not None and OutboxRunner(app).claim() is not None
