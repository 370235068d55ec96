"""A transition and its emails are one transaction: rolled back, nothing is sent."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import AuditEvent, Case, OutboundMessage
from mailflow.db.session import transaction
from mailflow.workflow.transitions import BY_THE_TEAM, close_case
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email
from tests.support.routing import latest_case, route_now

CASES = "cases@derm.localhost"


class DoorFailed(Exception):
    pass


def test_a_rolled_back_close_queues_no_email(
    app: App, provider: str, dermatologists: tuple[str, str],
) -> None:
    photos = [(f"{view}.jpg", skin_photo(width=640, height=480, seed=i))
              for i, view in enumerate(("distribution", "closeup_front", "oblique_side"))]
    route_now(app, case_email(provider, CASES, FULL_FORM, photos), provider, CASES)
    number = latest_case(app).number
    with app.sessions() as session:
        before = session.execute(select(func.count(OutboundMessage.id))).scalar_one()
    with pytest.raises(DoorFailed), transaction(app.sessions) as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        assert close_case(app, session, case, by=None, actor="cli", why=BY_THE_TEAM)
        queued = session.execute(select(OutboundMessage.kind).where(
            OutboundMessage.kind == "case_closed")).scalars().all()
        assert len(queued) == 2  # the provider and the dermatologist, in this transaction
        raise DoorFailed("the door failed after the transition")
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        assert case.state == "assigned"
        assert session.execute(select(func.count(OutboundMessage.id))).scalar_one() == before
        closed = session.execute(select(AuditEvent.id).where(
            AuditEvent.action == "case.closed")).all()
        assert closed == []
