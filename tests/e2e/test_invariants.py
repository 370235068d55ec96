"""DESIGN §3 invariants 1-4 and 7, each through the real doors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus, OutboxStatus, utcnow
from mailflow.spool import Arrival, spool
from mailflow.workflow.worker import InboundRunner, drain
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json
from tests.support.db import accepted_id, case_count, outbox, wait_final
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.sink import RelaySink, free_port


def test_kill_after_250_then_restart_finishes_the_case(
    app: App, config: Config, sink: RelaySink, provider: str, process_pool
) -> None:
    # The SMTP door alone, as its own process: it accepts, then dies before any processing.
    port = free_port()
    log = config.base_dir / "smtpd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailflow",
                "--config",
                str(config.base_dir / "config.toml"),
                "smtpd",
            ],
            env={**os.environ, "MAILFLOW_SMTP__PORT": str(port)},
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(lambda: "SMTP submission" in log.read_text(), 30, "smtpd to start")
        code, text = submit(
            port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos())
        )
        assert code == 250
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    message_id = accepted_id(text)
    assert case_count(app) == 0  # nothing was processed before the crash

    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        row = wait_final(app, message_id)
        assert row.status == MessageStatus.PROCESSED
        ack = sink.wait_for(provider)[0]
        assert "received" in str(ack.message["Subject"])
    finally:
        running.stop()
    assert case_count(app) == 1


@pytest.fixture
def spooled_case(app: App, provider: str) -> int:
    """A case accepted by the door (spooled) with no worker running."""
    raw = case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes()
    return spool(
        app,
        Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,), auth_user=provider, tls=True),
    )


def test_a_worker_that_dies_mid_message_is_replaced_after_its_lease(
    app: App, spooled_case: int
) -> None:
    claim = InboundRunner(app).claim()  # a worker claims it ... and dies without finishing
    assert claim is not None and claim.id == spooled_case
    assert drain(app) == 0  # the lease holds: nobody else takes it yet
    with time_machine.travel(utcnow() + timedelta(seconds=app.config.intake.lease_seconds + 1)):
        assert drain(app) == 1
    row = wait_final(app, claim.id)
    assert row.status == MessageStatus.PROCESSED and row.attempts == 2
    assert case_count(app) == 1


def test_the_same_message_twice_makes_one_case(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    raw = case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes()
    first = accepted_id(submit(service.port, provider, PASSWORD, raw, provider, [CASES])[1])
    # a redelivery through a relay carries an extra trace header but is the same message
    again = b"Received: from relay.test by mx.test; Mon, 2 Nov 2026 10:00:00 -0500\r\n" + raw
    second = accepted_id(submit(service.port, provider, PASSWORD, again, provider, [CASES])[1])
    # the worker's loops analyse both at once: whichever is routed first is the case
    rows = {row.status: row for row in (wait_final(app, first), wait_final(app, second))}
    assert set(rows) == {MessageStatus.PROCESSED, MessageStatus.DUPLICATE}
    assert rows[MessageStatus.DUPLICATE].duplicate_of_id == rows[MessageStatus.PROCESSED].id
    assert case_count(app) == 1
    assert len(sink.wait_for(provider)) == 1


def test_different_messages_sharing_a_message_id_stay_two(
    service: RunningService, app: App, provider: str
) -> None:
    ids = []
    for seed in (1, 2):
        msg = case_email(
            provider,
            CASES,
            FULL_FORM.replace("3 months", f"{seed} months"),
            three_photos(),
            headers={"Message-ID": "<same@clinic.test>"},
        )
        ids.append(accepted_id(submit(service.port, provider, PASSWORD, msg)[1]))
    msg = case_email(provider, CASES, FULL_FORM, three_photos())
    del msg["Message-ID"]
    ids.append(accepted_id(submit(service.port, provider, PASSWORD, msg)[1]))
    assert all(wait_final(app, i).status == MessageStatus.PROCESSED for i in ids)
    assert case_count(app) == 3


def test_relay_down_then_up_delivers_and_a_refusal_goes_dead(
    app: App, sink: RelaySink, provider: str, service: RunningService
) -> None:
    sink.refuse_with = "451 4.3.0 relay busy, try later"
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos()))
    queued = wait_until(
        lambda: [o for o in outbox(app) if o.attempts >= 1 and o.last_error] or None,
        30,
        "a failed delivery attempt",
    )
    assert queued[0].status in (OutboxStatus.QUEUED, OutboxStatus.SENDING)
    assert "451" in queued[0].last_error
    sink.refuse_with = ""
    ack = sink.wait_for(provider, timeout=30)[0]
    assert "received" in str(ack.message["Subject"])
    assert wait_until(lambda: outbox(app)[0].status == OutboxStatus.SENT or None, 10, "sent")

    sink.refuse_with = "550 5.1.1 no such user"
    msg = case_email(provider, CASES, FULL_FORM.replace("3 months", "5 weeks"), three_photos())
    submit(service.port, provider, PASSWORD, msg)
    dead = wait_until(
        lambda: [o for o in outbox(app) if o.status == OutboxStatus.DEAD] or None,
        30,
        "a dead delivery",
    )
    assert "550" in dead[0].last_error
    listed = cli_json(app.config, "outbox", "list", "--status", "dead")
    assert [row["id"] for row in listed] == [dead[0].id]


def test_no_reply_to_automatic_mail(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    msg = case_email(
        provider,
        CASES,
        "I am out of the office until Monday.",
        subject="Automatic reply: New consult",
        headers={"Auto-Submitted": "auto-replied"},
    )
    row = wait_final(app, accepted_id(submit(service.port, provider, PASSWORD, msg)[1]))
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "automatic"
    # replies are queued in the same transaction as the outcome: none was queued
    assert outbox(app) == []


@pytest.mark.parametrize("headers, mail_from", [
    ({"Precedence": "bulk"}, "news@lists.test"),
    ({"List-Id": "<derm.lists.test>"}, "list@lists.test"),
    ({}, ""),  # a bounce: empty envelope sender
    ({"From": "MAILER-DAEMON@mx.clinic.test"}, "postmaster@mx.clinic.test"),
])
def test_no_reply_to_lists_bounces_or_mailer_daemons(
    tmp_path, db_url: str, sink: RelaySink, process_pool, headers: dict[str, str], mail_from: str
) -> None:
    from mailflow.app import initialise
    from tests.conftest import make_config

    # the MX-style door (no AUTH), where such mail really arrives
    config = make_config(tmp_path, db_url, smtp={"require_auth": False},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        msg = case_email(headers.get("From", "someone@lists.test"), CASES, "Weekly digest",
                         headers={k: v for k, v in headers.items() if k != "From"})
        code, text = submit(running.port, None, None, msg, mail_from=mail_from, rcpt=[CASES])
        assert code == 250
        row = wait_final(app, accepted_id(text))
        assert row.status == MessageStatus.QUARANTINED and row.reason_code == "automatic"
        assert outbox(app) == []
    finally:
        running.stop()
        app.close()


def test_a_transient_failure_backs_off_instead_of_burning_its_retries(
    app: App, spooled_case: int
) -> None:
    from tests.support.db import message

    blob = next(app.config.storage_dir.joinpath("blobs").rglob(message(app, spooled_case).blob_sha))
    hidden = blob.with_suffix(".away")
    blob.rename(hidden)  # the storage is briefly unavailable
    assert drain(app) == 1
    row = message(app, spooled_case)
    assert row.status == MessageStatus.RECEIVED and row.attempts == 1
    assert row.not_before is not None and row.not_before > utcnow()
    assert "BlobError" in row.last_error and "Testpatient" not in row.last_error
    assert drain(app) == 0  # not retried at once
    hidden.rename(blob)  # storage is back
    with time_machine.travel(utcnow() + timedelta(seconds=31)):
        assert drain(app) == 1
    assert message(app, spooled_case).status == MessageStatus.PROCESSED
    assert case_count(app) == 1


def test_a_dead_analysis_process_is_replaced_and_nothing_is_quarantined(
    app: App, provider: str
) -> None:
    from mailflow.workflow.pool import AnalysisPool

    pool = AnalysisPool(1)
    try:
        pool.warm()
        for pid in pool.processes():
            os.kill(pid, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
        ids = [spool(app, Arrival("smtp", case_email(
            provider, CASES, FULL_FORM.replace("3 months", f"{n} weeks"), three_photos()
        ).as_bytes(), mail_from=provider, rcpt_to=(CASES,), auth_user=provider))
            for n in (1, 2)]
        assert drain(app, pool) == 2
        assert [wait_final(app, i).status for i in ids] == [MessageStatus.PROCESSED] * 2
    finally:
        pool.shutdown()
