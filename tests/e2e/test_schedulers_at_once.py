"""Schedulers starting and stopping at the wrong moment (both found by the chaos test).

Two schedulers starting at once on a new PostgreSQL database both found APScheduler's job
table missing and both created it; the second's CREATE TABLE waited for the first's, then
failed, and that scheduler stopped. Here the other scheduler's CREATE TABLE is held open in a
transaction while ours starts, then committed."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from mailflow.app import App
from mailflow.db.models import Case, utcnow
from mailflow.db.session import transaction
from mailflow.workflow import scheduler as scheduler_module
from mailflow.workflow.scheduler import SlaScheduler
from tests.conftest import postgres_only
from tests.support.cases import send_case
from tests.support.mail import wait_until


# SQLite takes its write lock first: one scheduler at a time makes the table there
@postgres_only
def test_a_scheduler_starts_when_another_makes_the_job_table_at_the_same_moment(
    app: App,
) -> None:
    other = SlaScheduler(app, key="the other scheduler")
    ours = SlaScheduler(app)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            ours.start()
        except BaseException as exc:  # what `mailflow scheduler` died of
            errors.append(exc)

    with other.engine.connect() as conn:
        creating = conn.begin()
        other.store.jobs_t.create(conn)  # made, not committed yet
        starting = threading.Thread(target=start)
        starting.start()
        wait_until(lambda: blocked(app), 30, "our scheduler to wait for the other's table")
        creating.commit()
    starting.join(60)
    try:
        assert errors == []
        assert ours.scheduler.running
    finally:
        ours.stop()
        other.engine.dispose()


def blocked(app: App) -> bool:
    with app.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%CREATE TABLE apscheduler_jobs%'")).scalar())


def test_a_scheduler_stops_while_its_sweep_is_running(
    app: App, provider: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos test: SIGTERM during a sweep hung `mailflow scheduler` for ever.
    APScheduler's shutdown holds its job stores' lock while it waits for the running sweep,
    and the sweep then waited for that lock to schedule the cases due soon."""
    number = send_case(app, provider)
    with transaction(app.sessions) as session:  # due within the sweep's horizon
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        case.sla_next_due_at = utcnow() + timedelta(seconds=30)
    sweeping, carry_on = threading.Event(), threading.Event()
    real_fire_due = scheduler_module.fire_due

    def slow_sweep(*args: Any, **kwargs: Any) -> int:
        if kwargs.get("case_ids") is None:  # the sweep, not a case's own job
            sweeping.set()
            carry_on.wait(30)
        return real_fire_due(*args, **kwargs)

    monkeypatch.setattr(scheduler_module, "fire_due", slow_sweep)
    running = SlaScheduler(app)
    running.start()  # its first sweep runs at once
    assert sweeping.wait(30)
    stopping = threading.Thread(target=running.stop)
    stopping.start()
    jobstores = running.scheduler._jobstores_lock
    wait_until(lambda: not _free(jobstores), 30, "shutdown to hold the job stores")
    carry_on.set()  # the sweep goes on to schedule the case due soon
    stopping.join(30)
    assert not stopping.is_alive(), "the scheduler hung in its stop"


def _free(lock: Any) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False
