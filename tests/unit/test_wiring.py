"""The application context is passed, not found: a state change in a session that was not
opened from App.sessions fails instead of leaving the case's SLA clock behind."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from mailflow.db.models import Case, utcnow
from mailflow.sla import clock


def test_a_state_change_in_a_session_without_the_clock_fails_loudly() -> None:
    with Session() as session, pytest.raises(clock.ClockNotBound):
        clock.on_transition(session, Case(number="DERM-2026-000001"), "incomplete",
                            "submitted", utcnow())


def test_an_urgency_change_in_a_session_without_the_clock_fails_loudly() -> None:
    with Session() as session, pytest.raises(clock.ClockNotBound):
        clock.on_urgency(session, Case(number="DERM-2026-000001"), "routine", utcnow(), "test")
