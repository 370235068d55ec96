"""Two assignments decided at the same moment (two loops of one worker, or two workers) never
put a dermatologist over max_open.

Found by a review: the sweep read the dermatologists' open cases while another transaction's
assignment to the same dermatologist was not yet committed, and picked them too. Made to overlap
for certain: the test's own assignment of the first case stays uncommitted until the sweep,
working on the second case, waits on a lock; then the test commits."""

from __future__ import annotations

import threading
from datetime import datetime

import time_machine
from sqlalchemy import select, text

from mailflow.app import App
from mailflow.db.models import Case, CaseState
from mailflow.db.session import ROW_LOCK, transaction
from mailflow.workflow.assign import try_assign
from mailflow.workflow.worker import sweep
from tests.conftest import postgres_only
from tests.support.mail import wait_until
from tests.support.roster import ET, new_case, roster_app

__all__ = ["roster_app"]  # a fixture, from tests/support/roster.py

NY_DERM = "ny.derm@derm.localhost"  # max_open = 1 in the roster; the only one licensed in NY


def _waiting_on_locks(app: App) -> int:
    with app.sessions() as session:
        return int(session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


@postgres_only  # row locks between writers: SQLite has one writer at a time
def test_a_sweep_during_another_assignment_keeps_max_open(roster_app: App) -> None:
    with time_machine.travel(datetime(2026, 11, 28, 10, 0, tzinfo=ET), tick=False):  # Saturday
        new_case(roster_app, "doc.ny@clinic.test", 1)
        new_case(roster_app, "doc.ny@clinic.test", 2)
    swept: list[int] = []
    with time_machine.travel(datetime(2026, 11, 30, 10, 0, tzinfo=ET), tick=False):  # Monday
        sweeper = threading.Thread(target=lambda: swept.append(sweep(roster_app)))
        with transaction(roster_app.sessions) as session:  # what a decline or a reply does
            first = session.execute(select(Case).order_by(Case.id).limit(1)
                                    .with_for_update(**ROW_LOCK)).scalar_one()
            derm = try_assign(roster_app, session, first)
            assert derm is not None and derm.email == NY_DERM
            sweeper.start()  # skips the first case (locked here), works on the second
            wait_until(lambda: _waiting_on_locks(roster_app) >= 1, 60,
                       "the sweep to wait on this uncommitted assignment")
        sweeper.join(60)
        assert not sweeper.is_alive()
    assert swept == [0]
    with roster_app.sessions() as session:
        cases = session.execute(select(Case).order_by(Case.id)).scalars().all()
        assert [(c.state, c.assignee.email if c.assignee else None) for c in cases] == [
            (CaseState.ASSIGNED, NY_DERM), (CaseState.SUBMITTED, None)]
