"""Recovery after a crash: the claims of a worker killed with SIGKILL go back as soon as another
worker starts (or beats), not after the lease; a live worker's claims are never taken.

The leases are an hour here, so a test that passes proves the instance rule, not the lease.
A worker is made to hold a claim by turning its message's blob into a FIFO: the analysis
process blocks opening it, with the claim committed. An outbox row is held mid-delivery by a
relay sink that takes the DATA and does not answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import (
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    ProcessInstance,
)
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.db import accepted_id, message, wait_final
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.sink import RelaySink

HOUR = 3600


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    cfg = make_config(
        tmp_path, db_url,
        intake={"lease_seconds": HOUR, "workers": 1},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port, "lease_seconds": HOUR,
                  "retry_schedule_seconds": [1, 1, 1]},
        recovery={"heartbeat_seconds": 0.5, "dead_after_seconds": HOUR},
        smtp={"rate_per_minute": 1000},
    )
    initialise(cfg)
    return cfg


def accept_case(app: App, pool: AnalysisPool, provider: str) -> int:
    """A case through the real SMTP door, with no worker running."""
    door = RunningService(app, pool, ("smtp",)).start()
    try:
        msg = case_email(provider, CASES, FULL_FORM, three_photos())
        code, text = submit(door.port, provider, PASSWORD, msg)
        assert code == 250
    finally:
        door.stop()
    return accepted_id(text)


class StalledBlob:
    """The message's blob swapped for a FIFO: whoever analyses it blocks, claim held."""

    def __init__(self, app: App, message_id: int) -> None:
        sha = message(app, message_id).blob_sha
        self.path = next((app.config.storage_dir / "blobs").rglob(sha))
        self.away = self.path.with_suffix(".away")

    def __enter__(self) -> StalledBlob:
        self.path.rename(self.away)
        os.mkfifo(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink()
        self.away.rename(self.path)


@pytest.fixture
def worker_process(config: Config) -> Iterator[subprocess.Popen[bytes]]:
    """`mailflow worker` in its own process group (its analysis process with it)."""
    log = config.base_dir / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
             "worker"],
            stdout=out, stderr=out, start_new_session=True,
        )
    yield proc
    kill_9(proc)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def claimed(app: App, message_id: int) -> InboundMessage | None:
    row = message(app, message_id)
    return row if row.status == MessageStatus.PROCESSING else None


def instances(app: App) -> list[ProcessInstance]:
    with app.sessions() as session:
        return list(session.execute(select(ProcessInstance)).scalars())


def test_a_killed_workers_message_is_taken_at_once_by_the_next_worker(
    app: App, sink: RelaySink, provider: str, process_pool: AnalysisPool,
    worker_process: subprocess.Popen[bytes],
) -> None:
    message_id = accept_case(app, process_pool, provider)
    with StalledBlob(app, message_id):
        wait_until(lambda: claimed(app, message_id), 60, "the worker to claim the message")
        kill_9(worker_process)
    assert claimed(app, message_id)  # the claim outlived its worker, for an hour's lease
    running = RunningService(app, process_pool, ("worker", "outbox")).start()
    try:
        ack = sink.wait_for(provider)[0]
        assert "received" in str(ack.message["Subject"])
        row = wait_final(app, message_id)
        assert row.status == MessageStatus.PROCESSED and row.attempts == 2
        assert row.claimed_by is None
        # the dead worker's row went with its claims; only the running one is left
        assert [i.pid for i in instances(app)] == [os.getpid()]
    finally:
        running.stop()
    assert instances(app) == []  # a clean stop unregisters


def test_a_delivery_cut_off_mid_data_is_sent_again_with_the_same_message_id(
    app: App, sink: RelaySink, provider: str, process_pool: AnalysisPool,
    worker_process: subprocess.Popen[bytes],
) -> None:
    sink.hold_data.set()
    accept_case(app, process_pool, provider)

    def sending() -> OutboundMessage | None:
        with app.sessions() as session:
            return session.execute(select(OutboundMessage).where(
                OutboundMessage.kind == "ack", OutboundMessage.status == OutboxStatus.SENDING)
            ).scalar_one_or_none()

    row = wait_until(lambda: sink.to(provider) and sending(), 60, "the relay to hold the ack")
    kill_9(worker_process)  # the relay has the message; the sender never heard its 250
    sink.hold_data.clear()
    running = RunningService(app, process_pool, ("worker", "outbox")).start()
    try:
        copies = sink.wait_for(provider, count=2)
        wait_until(lambda: _status(app, row.id) == OutboxStatus.SENT, 30, "the ack to be sent")
    finally:
        running.stop()
    copies = sink.to(provider)
    assert len(copies) == 2  # sent again once, never more
    assert {c.message["Message-ID"] for c in copies} == {row.message_id}
    assert copies[0].raw == copies[1].raw  # the stored message, byte for byte


def test_a_worker_killed_while_the_relay_says_goodbye_sends_nothing_again(
    app: App, sink: RelaySink, provider: str, process_pool: AnalysisPool,
    worker_process: subprocess.Popen[bytes],
) -> None:
    """Found by the chaos test (an email twice at the relay): the message was recorded as sent
    only after QUIT's answer, so a kill during that round trip sent it again."""
    sink.hold_quit.set()
    accept_case(app, process_pool, provider)
    wait_until(lambda: sink.to(provider) and sink.quits, 60, "the relay to take the ack")
    kill_9(worker_process)  # the relay has it, and the deliverer waited for its goodbye
    sink.hold_quit.clear()
    with app.sessions() as session:
        ack = session.execute(select(OutboundMessage).where(OutboundMessage.kind == "ack")
                              ).scalar_one()
    running = RunningService(app, process_pool, ("worker", "outbox")).start()
    try:
        wait_until(lambda: _status(app, ack.id) == OutboxStatus.SENT, 30, "the ack to be sent")
        assert instances(app) and all(i.pid == os.getpid() for i in instances(app))
    finally:
        running.stop()
    assert len(sink.to(provider)) == 1


def _status(app: App, outbound_id: int) -> str:
    with app.sessions() as session:
        row = session.get(OutboundMessage, outbound_id)
        assert row is not None
        return row.status


def test_a_running_workers_claim_is_left_alone_until_it_dies(
    app: App, sink: RelaySink, provider: str, process_pool: AnalysisPool,
    worker_process: subprocess.Popen[bytes],
) -> None:
    message_id = accept_case(app, process_pool, provider)
    with ExitStack() as stack:
        with StalledBlob(app, message_id):
            holder = wait_until(lambda: claimed(app, message_id), 60, "the worker to claim it")
            other = RunningService(app, process_pool, ("worker", "outbox")).start()
            stack.callback(other.stop)
            assert other.service is not None and other.service.instance is not None
            assert other.service.instance.release_gone() == 0  # what each heartbeat does
            row = claimed(app, message_id)
            assert row is not None and row.claimed_by == holder.claimed_by
            assert row.attempts == 1
            assert {i.pid for i in instances(app)} == {worker_process.pid, os.getpid()}
            kill_9(worker_process)
        # the other worker's next heartbeat finds the holder gone and takes the message
        assert wait_final(app, message_id).status == MessageStatus.PROCESSED
        assert sink.wait_for(provider)
