"""A runner: claim a queued row with a lease, dispose of it, finish, written once for every queue.

Mailman's runners are the model. `claim()` takes the next row that is due (or whose claim has
outlived its lease) in its own transaction, counts the attempt and names the process instance
that holds it (mailflow/instances.py gives a stopped instance's claims back). `dispose()` does
the work and finishes the row in a transaction that first checks the claim is still held, so a
worker whose claim lapsed or was given back drops its result. A failure is counted: the row is
put back with a back-off, or after the last attempt (or a permanent failure) shunted to its
final state (quarantined, dead, given up) with its audit event.

`drain()` processes what is due now and returns how many it claimed (tests call it directly);
`serve_forever()` is the loop `mailflow serve` runs: drain, then sleep until a wake-up (a local
event or one from the bus) or the poll interval.

Subclasses say where their queue is (`due`, `take`, `holds`) and what finishing means
(`dispose`, `retry`, `give_up`); see workflow/worker.py (inbound), workflow/report_runner.py
(consult reports) and outbound/delivery.py (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Base, utcnow
from mailflow.db.session import ROW_LOCK, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """What a runner holds: the row, when it was claimed, by whom, and which attempt this is."""

    id: int
    claimed_at: datetime
    attempts: int  # this attempt included
    instance: str | None  # the process instance holding it (None: only the lease)


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed, in words fit for the row and the log (no message content)."""

    error: str
    permanent: bool = False  # no retry can succeed: shunt it now


RowT = TypeVar("RowT", bound=Base)
ClaimT = TypeVar("ClaimT", bound=Claim)


class Runner(ABC, Generic[RowT, ClaimT]):
    """One queue's claim -> dispose -> finish lifecycle."""

    name: ClassVar[str]  # the part of `mailflow serve` that runs it
    model: ClassVar[type[Any]]  # the queued rows' table
    batch: ClassVar[int] = 20  # a loop turn's most: the loop looks up between batches
    wake_topics: ClassVar[tuple[str, ...]] = ()  # bus topics that may mean new work
    crashed: ClassVar[str] = "the process handling it stopped, every time"

    def __init__(self, app: App, instance: str | None = None) -> None:
        self.app = app
        self.instance = instance

    # --- what a subclass says about its queue ------------------------------------------------

    @property
    @abstractmethod
    def max_attempts(self) -> int:
        """Attempts before the row is shunted."""

    @property
    @abstractmethod
    def backoff(self) -> tuple[int, ...]:
        """Seconds to wait after the 1st, 2nd, ... failed attempt (the last one repeats)."""

    @property
    @abstractmethod
    def poll_seconds(self) -> float:
        """How often an idle loop looks for work nobody woke it for."""

    @abstractmethod
    def due(self, now: datetime) -> ColumnElement[bool]:
        """Rows that may be claimed now: waiting and due, or claimed past their lease."""

    def order(self) -> tuple[Any, ...]:
        return (self.model.id,)

    @abstractmethod
    def take(self, row: RowT, now: datetime) -> ClaimT:
        """Mark the row claimed by this instance (attempt counted); the claim that says so."""

    @abstractmethod
    def holds(self, row: RowT, claim: ClaimT) -> bool:
        """Whether the row is still claimed under this claim."""

    @abstractmethod
    def dispose(self, claim: ClaimT) -> None:
        """Do the work and finish the row (in a transaction that checks `held`); raise on
        failure."""

    @abstractmethod
    def retry(self, session: Session, row: RowT, claim: ClaimT, failure: Failure,
              delay: timedelta) -> None:
        """Put the row back, due again after `delay`, the failure recorded."""

    @abstractmethod
    def give_up(self, session: Session, row: RowT, claim: ClaimT, failure: Failure) -> None:
        """Shunt the row to its final state and audit it."""

    def failure(self, claim: ClaimT, exc: Exception) -> Failure:
        """What an exception from `dispose` means; by default its kind and where it happened
        (exception text can quote message content)."""
        return Failure(where(exc))

    # --- the lifecycle -------------------------------------------------------------------------

    def claim(self, skip: Collection[int] = ()) -> ClaimT | None:
        """Claim the next due row (not one of `skip`); None when nothing is due."""
        now = utcnow()
        query = select(self.model).where(self.due(now))
        if skip:
            query = query.where(self.model.id.not_in(skip))
        with transaction(self.app.sessions) as session:
            row = session.execute(
                query.order_by(*self.order()).limit(1).with_for_update(skip_locked=True, **ROW_LOCK)
            ).scalar_one_or_none()
            return None if row is None else self.take(row, now)

    def held(self, session: Session, claim: ClaimT) -> RowT | None:
        """The row, locked, if this claim still holds it; None when it lapsed or was given
        back (another runner has it now)."""
        row: RowT | None = session.get(self.model, claim.id, with_for_update=ROW_LOCK)
        return row if row is not None and self.holds(row, claim) else None

    def process(self, claim: ClaimT) -> None:
        if claim.attempts > self.max_attempts:  # it keeps killing whoever works on it
            self.fail(claim, Failure(self.crashed, permanent=True))
            return
        try:
            self.dispose(claim)
        except Exception as exc:
            log.debug("%s %d failed", self.name, claim.id, exc_info=True)
            self.fail(claim, self.failure(claim, exc))

    def fail(self, claim: ClaimT, failure: Failure) -> None:
        """Count a failed attempt: back off, or shunt the row after the last one."""
        with transaction(self.app.sessions) as session:
            row = self.held(session, claim)
            if row is None:
                return
            if failure.permanent or claim.attempts >= self.max_attempts:
                self.give_up(session, row, claim, failure)
            else:
                self.retry(session, row, claim, failure, self.delay(claim.attempts))

    def delay(self, attempts: int) -> timedelta:
        schedule = self.backoff
        return timedelta(seconds=schedule[min(attempts, len(schedule)) - 1] if schedule else 0)

    def drain(self, limit: int | None = None) -> int:
        """Process what is due now, each row at most once (a row due again at once after a
        failure waits for the next drain); returns how many were claimed."""
        seen: set[int] = set()
        while limit is None or len(seen) < limit:
            claim = self.claim(seen)
            if claim is None:
                break
            seen.add(claim.id)
            self.process(claim)
        return len(seen)

    def step(self) -> int:
        """One turn of the loop; returns how much was done (0: sleep until woken)."""
        return self.drain(self.batch)

    async def serve_forever(self, thread: Executor, wake: asyncio.Event,
                            on_work: Callable[[], None], stopping: asyncio.Event) -> None:
        """Turn after turn on `thread`; idle, wait for `wake` or the poll interval. Returns
        once `stopping` is set (and `wake` with it), after the turn under way.

        A flag, not Task.cancel(): before Python 3.12, asyncio.wait_for swallows a
        cancellation that arrives as the awaited event is set (CPython gh-86296), and the
        loop then ran on, so a stop (SIGTERM) waited for ever."""
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            wake.clear()
            try:
                done = await loop.run_in_executor(thread, self.step)
            except Exception:
                log.exception("%s step failed; retrying after the poll interval", self.name)
                done = 0
            if stopping.is_set():
                return
            if done:
                on_work()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=self.poll_seconds)


def where(exc: BaseException) -> str:
    """The exception's kind and our innermost frame: enough to find it, nothing of the data."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/mailflow/" in f.filename] or frames
    if not ours:
        return type(exc).__name__
    last = ours[-1]
    return f"{type(exc).__name__} in {Path(last.filename).name}:{last.lineno} ({last.name})"
