"""Watching the service's database: when each message's acknowledgement is queued and sent,
what failed, and the figures of a pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from benchmarks.figures import pct
from benchmarks.intake.mail import Sent
from mailflow.db.models import InboundMessage, MessageStatus, OutboundMessage


class AckWatcher(threading.Thread):
    """Polls outbound_messages every 5 ms; notes when each cause's first row is first seen.
    Every 100 ms it also looks for inbound messages that failed (an error, quarantine), so a
    broken service is reported at once instead of waited for."""

    GIVEN_UP = (MessageStatus.QUARANTINED, MessageStatus.DUPLICATE, MessageStatus.DISCARDED)

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.seen: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.failed: dict[int, str] = {}  # inbound id -> status and last error
        self._halt = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        last_id = 0
        acks = select(
            OutboundMessage.id, OutboundMessage.cause_message_id, OutboundMessage.kind
        ).order_by(OutboundMessage.id)
        failures = select(
            InboundMessage.id, InboundMessage.status, InboundMessage.last_error
        ).where((InboundMessage.last_error != "") | InboundMessage.status.in_(self.GIVEN_UP))
        polls = 0
        with self.engine.connect() as conn:
            while not self._halt.is_set():
                rows = conn.execute(acks.where(OutboundMessage.id > last_id)).all()
                bad = conn.execute(failures).all() if polls % 20 == 0 else []
                conn.rollback()  # a fresh snapshot on the next poll
                polls += 1
                now = time.perf_counter()
                if rows or bad:
                    with self._cond:
                        for row_id, cause, kind in rows:
                            last_id = max(last_id, row_id)
                            if cause is not None and cause not in self.seen:
                                self.seen[cause] = now
                                self.kinds[cause] = kind
                        for ref, status, error in bad:
                            self.failed.setdefault(ref, f"{status}: {error[:200]}")
                        self._cond.notify_all()
                time.sleep(0.005)

    def wait(self, refs: Sequence[int], timeout: float) -> bool:
        """Until every message has its ack (True), or failed, or the time is up (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(r in self.seen or r in self.failed for r in refs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return all(r in self.seen for r in refs)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def wait_sent(engine: Engine, ref: int, timeout: float, watcher: AckWatcher) -> bool:
    """Until the acknowledgement caused by message `ref` has been delivered to the relay."""
    deadline = time.monotonic() + timeout
    query = select(func.count()).where(
        (OutboundMessage.cause_message_id == ref) & (OutboundMessage.status == "sent")
    )
    while time.monotonic() < deadline and ref not in watcher.failed:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return True
        time.sleep(0.02)
    return False


@dataclass
class Pass:
    name: str
    sent: list[Sent]
    ack_ms: list[float] = field(default_factory=list)
    ack_missing: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    probe_ms: list[float] = field(default_factory=list)  # NOOP round trips while sending
    probe_after_ms: list[float] = field(default_factory=list)  # ... after, until the last ack
    failures: list[str] = field(default_factory=list)  # messages the service failed to process

    @property
    def data_ms(self) -> list[float]:
        return [s.data_ms for s in self.sent if s.code == 250]

    @property
    def refused(self) -> list[Sent]:
        return [s for s in self.sent if s.code != 250]

    @property
    def rate(self) -> float:
        """Messages accepted per second over the pass (first DATA to last 250)."""
        ok = [s for s in self.sent if s.code == 250]
        if len(ok) < 2:
            return float("nan")
        span = max(s.t_reply for s in ok) - min(s.t_data for s in ok)
        return len(ok) / span


@dataclass
class Memory:
    size: int
    server_peak: float
    server_idle: float
    children: list[tuple[str, float]] = field(default_factory=list)  # (what, peak MB)
    ok: bool = True


@dataclass
class Result:
    label: str
    error: str = ""  # the service could not be measured
    passes: dict[str, Pass] = field(default_factory=dict)
    memory: Memory | None = None
    notes: list[str] = field(default_factory=list)


def ack_times(p: Pass, watcher: AckWatcher, timeout: float) -> None:
    refs = [s.ref for s in p.sent if s.ref is not None]
    watcher.wait(refs, timeout)
    for s in p.sent:
        if s.ref is None:
            continue
        if s.ref in watcher.seen:
            p.ack_ms.append((watcher.seen[s.ref] - s.t_data) * 1000)
            kind = watcher.kinds[s.ref]
            p.kinds[kind] = p.kinds.get(kind, 0) + 1
        else:
            p.ack_missing += 1
            if s.ref in watcher.failed:
                p.failures.append(f"message {s.ref} {watcher.failed[s.ref]}")


def worker_breakdown(engine: Engine, refs: Sequence[int]) -> str:
    """Per-message worker time from the rows' own timestamps (back-to-back messages queue up,
    so a message's service time is processed_at - max(received_at, previous processed_at))."""
    if not refs:
        return ""
    with engine.connect() as conn:
        rows = conn.execute(
            select(InboundMessage.id, InboundMessage.received_at, InboundMessage.processed_at)
            .where(InboundMessage.id.in_(refs))
            .order_by(InboundMessage.id)
        ).all()
        acks = conn.execute(
            select(OutboundMessage.created_at, OutboundMessage.sent_at).where(
                OutboundMessage.cause_message_id.in_(refs)
            )
        ).all()
    service = []
    prev = None
    for _id, received, processed in rows:
        if processed is None:
            continue
        start = received if prev is None or received > prev else prev
        service.append((processed - start).total_seconds() * 1000)
        prev = processed
    delivery = [(s - c).total_seconds() * 1000 for c, s in acks if s is not None and c is not None]
    return (
        f"worker time per case (from row timestamps) p50 {pct(service, 50):.0f} ms, "
        f"p95 {pct(service, 95):.0f} ms; ack queued->delivered to relay p50 "
        f"{pct(delivery, 50):.0f} ms"
    )
