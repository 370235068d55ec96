"""Which process holds a claim, and giving back the claims of processes that stopped.

Every process that claims work (the worker, reports and outbox parts: mailflow/runner.py)
registers a `process_instances` row and records its id on each claim: inbound messages,
outbox rows and consult reports waiting to be rendered. At start-up and then every
`heartbeat_seconds`, a process marks itself alive and releases the claims of instances that
are gone:

- on the same machine (same boot, same pid namespace), the pid is looked up in /proc: gone if
  there is no such process, it is a zombie, or its start time differs (the pid was reused);
- anywhere else, gone when its heartbeat is older than `dead_after_seconds`.

The lease (`[intake] lease_seconds`, `[outbound] lease_seconds`) stays as the last resort for
a claim whose process cannot be judged (one made with no instance, e.g. by a CLI command).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

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
from mailflow.db.session import ROW_LOCK, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    host: str
    machine: str  # where a pid means this process: boot id and pid namespace; "" if unknown
    pid: int
    pid_start: int  # start time in clock ticks after boot (/proc/PID/stat field 22)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process on this machine; None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return fields[0], int(fields[19])


def _machine() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""  # no /proc: only the heartbeat can tell
    return f"{boot}/{namespace}"


def this_process() -> Identity:
    stat = _proc_stat(os.getpid())
    machine = _machine() if stat is not None else ""
    return Identity(socket.gethostname(), machine, os.getpid(), stat[1] if stat else 0)


def is_gone(row: ProcessInstance, here: Identity, now: datetime, dead_after: float) -> bool:
    if row.machine and row.machine == here.machine:
        stat = _proc_stat(row.pid)
        return stat is None or stat[0] in ("Z", "X") or stat[1] != row.pid_start
    return row.heartbeat_at < now - timedelta(seconds=dead_after)


class Instance:
    """This process as a holder of claims."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.id = uuid.uuid4().hex
        self.identity = this_process()
        self._lock = threading.Lock()  # a heartbeat still on its thread must not outlive close
        self._closed = False

    def register(self) -> None:
        with transaction(self.app.sessions) as session:
            session.add(self._row())
        log.info("instance %s: pid %d on %s", self.id, self.identity.pid, self.identity.host)

    def _row(self) -> ProcessInstance:
        me = self.identity
        now = utcnow()
        return ProcessInstance(id=self.id, host=me.host[:255], machine=me.machine, pid=me.pid,
                               pid_start=me.pid_start, started_at=now, heartbeat_at=now)

    def beat(self) -> None:
        with self._lock, transaction(self.app.sessions) as session:
            if self._closed:
                return
            row = session.get(ProcessInstance, self.id, with_for_update=ROW_LOCK)
            if row is not None:
                row.heartbeat_at = utcnow()
                return
            # another process took this one for stopped (its heartbeat was late) and gave
            # its claims back: the work under way will find its claims gone and drop it
            log.error("instance %s was taken for stopped; registering again", self.id)
            session.add(self._row())

    def release_gone(self) -> int:
        """Give back the claims of every instance that has stopped; returns how many claims."""
        return release_gone(self.app, self.identity, exclude=self.id)

    def close(self) -> None:
        """A clean stop: anything still claimed goes back now, and the row goes."""
        with self._lock, transaction(self.app.sessions) as session:
            self._closed = True
            row = session.get(ProcessInstance, self.id, with_for_update=ROW_LOCK)
            if row is not None:
                _release(session, row)


def release_gone(app: App, here: Identity, exclude: str = "") -> int:
    dead_after = app.config.recovery.dead_after_seconds
    with app.sessions() as session:  # a read: most beats find everyone alive and write nothing
        suspects = [row.id for row in session.execute(
            select(ProcessInstance).where(ProcessInstance.id != exclude)).scalars()
            if is_gone(row, here, utcnow(), dead_after)]
    released = 0
    for instance_id in suspects:
        with transaction(app.sessions) as session:
            # judged again under the row's lock: a heartbeat may have come in meanwhile
            row = session.get(ProcessInstance, instance_id, with_for_update=ROW_LOCK)
            if row is None or not is_gone(row, here, utcnow(), dead_after):
                continue
            who = (row.id, row.pid, row.host)
            counts = _release(session, row)
        released += sum(counts)
        log.warning("instance %s (pid %d on %s) has stopped: gave back %d message(s), "
                    "%d email(s) being sent, %d report(s)", *who, *counts)
    return released


def _release(session: Session, row: ProcessInstance) -> tuple[int, int, int]:
    now = utcnow()
    inbound = session.execute(
        update(InboundMessage)
        .where(InboundMessage.status == MessageStatus.PROCESSING,
               InboundMessage.claimed_by == row.id)
        .values(status=MessageStatus.RECEIVED, claimed_at=None, claimed_by=None, not_before=None)
    ).rowcount
    # the relay may have taken it already: sent again, byte for byte (the same Message-ID)
    outbound = session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.status == OutboxStatus.SENDING,
               OutboundMessage.claimed_by == row.id)
        .values(status=OutboxStatus.QUEUED, claimed_at=None, claimed_by=None,
                next_attempt_at=now,
                last_error="the sending process stopped during delivery; sent again")
    ).rowcount
    reports = session.execute(
        update(Consult)
        .where(Consult.report_claimed_by == row.id)
        .values(report_claimed_at=None, report_claimed_by=None)
    ).rowcount
    session.delete(row)
    return inbound, outbound, reports
