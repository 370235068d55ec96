"""The SLA timers: APScheduler 3, its job store in our database.

A sweep runs at start-up and every minute (it catches anything missed while nothing ran), and
each case due within the next sweep interval gets a one-off job at its exact due time. Jobs
only call the enforcer, which fires each warning and breach exactly once whatever runs it, so
several schedulers on one database, or a restart between a due time and its job, are safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, ProgrammingError

from mailflow.app import App
from mailflow.db.models import Case, CaseState, utcnow
from mailflow.db.session import make_engine
from mailflow.workflow import retention
from mailflow.workflow.enforcer import fire_due, recompute_open

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60


class Running:
    """The schedulers started in this process, by key, each with its app. A stored job names
    its key, not its app: APScheduler keeps jobs in the database by reference, so a job cannot
    carry the app itself and finds it here when it runs."""

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[App, BackgroundScheduler]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, app: App, scheduler: BackgroundScheduler) -> None:
        with self._lock:
            self._by_key[key] = (app, scheduler)

    def remove(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    @contextmanager
    def scheduling(self, key: str) -> Iterator[BackgroundScheduler | None]:
        """The scheduler to add jobs to, None once it is stopping. A job must not add jobs
        once shutdown has begun: APScheduler's shutdown(wait=True) holds the job stores' lock
        while it waits for running jobs, and add_job waits for that lock, so a sweep that
        was running at SIGTERM hung the scheduler for ever (found by the chaos test)."""
        with self._lock:
            entry = self._by_key.get(key)
            yield entry[1] if entry else None

    def app(self, key: str) -> App | None:
        entry = self._by_key.get(key)
        return entry[0] if entry else None


RUNNING = Running()  # the one a stored job can reach: its function and key are all it keeps


def sweep_job(app_key: str) -> None:
    app = RUNNING.app(app_key)
    if app is None:
        return
    fire_due(app)
    _schedule_soon(app, app_key)


def case_job(app_key: str, case_id: int) -> None:
    app = RUNNING.app(app_key)
    if app is not None:
        fire_due(app, case_ids=[case_id])


def retention_job(app_key: str) -> None:
    """The daily purge of raw messages and photos past their retention."""
    app = RUNNING.app(app_key)
    if app is not None:
        retention.run(app)


def _schedule_soon(app: App, app_key: str) -> None:
    now = utcnow()
    horizon = now + timedelta(seconds=SWEEP_SECONDS * 1.5)
    with app.sessions() as session:
        soon = session.execute(
            select(Case.id, Case.sla_next_due_at)
            .where(Case.sla_next_due_at > now, Case.sla_next_due_at <= horizon,
                   Case.state.in_(CaseState.CLOCK_RUNNING))
        ).all()
    with RUNNING.scheduling(app_key) as scheduler:
        if scheduler is None:
            return  # stopping
        for case_id, due in soon:
            scheduler.add_job(
                case_job, "date", run_date=due, args=[app_key, case_id],
                id=f"sla-case-{case_id}", replace_existing=True, misfire_grace_time=3600,
            )


class SlaScheduler:
    def __init__(self, app: App, key: str | None = None) -> None:
        self.app = app
        self.key = key or app.config.database_url
        # Its own engine: the job store reads then writes in one transaction, which on SQLite
        # must hold the write lock from the start (a deferred one fails at once under load).
        self.engine = make_engine(app.config.database_url, always_write=True)
        self.store = SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.store},
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1},
        )

    def start(self) -> None:
        recompute_open(self.app)  # the calendar may have changed while we were down
        RUNNING.add(self.key, self.app, self.scheduler)
        self._job_table()
        self.scheduler.start()
        self.scheduler.add_job(
            sweep_job, "interval", seconds=SWEEP_SECONDS, args=[self.key], id="sla-sweep",
            replace_existing=True, next_run_time=datetime.now().astimezone(),
        )
        keep = self.app.config.retention
        if keep.enabled:
            hour, minute = (int(part) for part in keep.run_at.split(":"))
            self.scheduler.add_job(
                retention_job, "cron", hour=hour, minute=minute, args=[self.key],
                id="retention-daily", replace_existing=True, misfire_grace_time=12 * 3600,
            )
        log.info("SLA scheduler started")

    def _job_table(self) -> None:
        """The job store's table, made here rather than by APScheduler's start: two schedulers
        starting at once on a new database both found it missing and both created it, and
        the loser stopped with an error (found by the chaos test, PostgreSQL)."""
        try:
            self.store.jobs_t.create(self.engine, checkfirst=True)
        except (IntegrityError, ProgrammingError):  # the other one made it meanwhile
            log.info("the scheduler's job table was made by another scheduler")

    def stop(self) -> None:
        RUNNING.remove(self.key)  # first: a job still running adds nothing (Running.scheduling)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.engine.dispose()
