"""Found by the chaos test: two schedulers starting at once on a new PostgreSQL database both
found APScheduler's job table missing and both created it; the second's CREATE TABLE waited for
the first's, then failed, and that scheduler stopped. Here the other scheduler's CREATE TABLE
is held open in a transaction while ours starts, then committed."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from mailflow.app import App
from mailflow.workflow.scheduler import SlaScheduler
from tests.support.mail import wait_until


def test_a_scheduler_starts_when_another_makes_the_job_table_at_the_same_moment(
    app: App,
) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite takes its write lock first: one scheduler at a time makes it")
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
