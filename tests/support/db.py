"""Reading what the service did, straight from the database (for polling in tests)."""

from __future__ import annotations

from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import (
    Account,
    Case,
    Consult,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
)
from mailflow.db.session import transaction
from tests.support.mail import wait_until

FINAL = (MessageStatus.PROCESSED, MessageStatus.QUARANTINED, MessageStatus.DUPLICATE)


def message(app: App, message_id: int) -> InboundMessage:
    with app.sessions() as session:
        row = session.get(InboundMessage, message_id)
        assert row is not None
        return row


def wait_final(app: App, message_id: int, timeout: float = 30.0) -> InboundMessage:
    return wait_until(
        lambda: (row := message(app, message_id)).status in FINAL and row,
        timeout,
        f"message {message_id} to reach an outcome",
    )


def case_count(app: App) -> int:
    with app.sessions() as session:
        return session.execute(select(func.count()).select_from(Case)).scalar_one()


def outbox(app: App) -> list[OutboundMessage]:
    with app.sessions() as session:
        return list(session.execute(select(OutboundMessage).order_by(OutboundMessage.id)).scalars())


def accepted_id(reply_text: bytes) -> int:
    """The message number from our '250 2.0.0 Accepted as message N' reply."""
    return int(reply_text.decode().rsplit(" ", 1)[1])


def answered_case(app: App, provider: str, derm: str, number: str = "DERM-2026-900001") -> int:
    """A reviewed case with a consult whose report is not issued yet; returns the consult's
    id (the report queue's work, without going through intake)."""
    with transaction(app.sessions) as session:
        doc = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        dermatologist = session.execute(select(Account).where(Account.email == derm)
                                        ).scalar_one()
        case = Case(number=number, provider_id=doc.id, state="reviewed",
                    form={"question": "eczema or psoriasis?"}, assignee_id=dermatologist.id)
        session.add(case)
        session.flush()
        consult = Consult(case_id=case.id, dermatologist_id=dermatologist.id, version=1,
                          answer={"diagnosis": "Nummular eczema", "plan": "emollients"})
        session.add(consult)
        session.flush()
        return consult.id
