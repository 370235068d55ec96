"""The review's time-driven step: reviewed cases nobody writes about close themselves.

What a reply on a case does is the case-thread chain (thread_chain) and the
dermatologist-answer chain (answer_chain); what a transition tells whom is `transitions`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Case, CaseState, utcnow
from mailflow.db.session import ROW_LOCK
from mailflow.workflow.transitions import close_case
from mailflow.workflow.transitions import comment as comment  # the web's comment form

log = logging.getLogger(__name__)
S = CaseState


def close_idle(app: App, session: Session, now: datetime | None = None) -> int:
    """Close reviewed cases nobody has written about for `workflow.idle_close_days`."""
    now = now or utcnow()
    cutoff = now - timedelta(days=app.config.workflow.idle_close_days)
    idle = (
        session.execute(
            select(Case)
            .where(
                Case.state.in_((S.REVIEWED, S.FOLLOW_UP)),
                func.coalesce(Case.last_activity_at, Case.reviewed_at) < cutoff,
            )
            .with_for_update(skip_locked=True, **ROW_LOCK)
        )
        .scalars()
        .all()
    )
    days = app.config.workflow.idle_close_days
    why = f"after {days:g} days without a message"
    closed = 0
    for case in idle:
        try:
            with session.begin_nested():  # one broken case must not hold up the others
                close_case(app, session, case, by=None, actor="system", why=why)
                closed += 1
        except Exception as exc:
            log.error("case %s could not be closed (%s)", case.number, type(exc).__name__)
    return closed
