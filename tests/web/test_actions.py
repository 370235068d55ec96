"""Admin actions: CSRF on every POST, then reassign, close, reprocess, discard, retry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import (
    AuditEvent,
    Case,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
)
from mailflow.db.session import transaction
from mailflow.workflow.worker import drain
from tests.support.cases import CASES, deliver
from tests.support.mail import case_email
from tests.support.web import csrf_of

STRANGER = "stranger@elsewhere.test"


def held_message(app: App, body: str) -> int:
    """A message from an unknown sender: the router holds it."""
    deliver(app, case_email(STRANGER, CASES, body).as_bytes(), STRANGER, CASES, auth=False)
    with app.sessions() as session:
        row = session.execute(select(InboundMessage).where(
            InboundMessage.mail_from == STRANGER).order_by(InboundMessage.id.desc())
        ).scalars().first()
        assert row is not None
        assert row.status == MessageStatus.QUARANTINED
        return row.id


@pytest.mark.parametrize("token", ["", "forged", "other-session"])
def test_a_post_without_this_sessions_csrf_token_is_refused(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
    token: str,
) -> None:
    admin = web(people["admin"])
    if token == "other-session":
        token = csrf_of(web(people["admin"]).get("/").text)  # valid, but another sign-in's
    elif token == "forged":
        token = "a" * 64
    data = {"to": people["derm2"]} | ({"csrf_token": token} if token else {})
    for path in (f"/cases/{case_number}/reassign", f"/cases/{case_number}/close",
                 "/quarantine/1/discard", "/outbox/1/retry", "/logout"):
        response = admin.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403, path
    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.state == "assigned" and case.assignee.email == people["derm"]
    assert admin.get("/api/cases").status_code == 200  # still signed in


def test_an_admin_reassigns_then_closes_a_case(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    admin = web(people["admin"])
    token = csrf_of(admin.get(f"/cases/{case_number}").text)
    response = admin.post(f"/cases/{case_number}/reassign",
                          data={"csrf_token": token, "to": people["derm2"]})
    assert response.status_code == 200 and "assigned to Dr Derm Two" in response.text
    refused = admin.post(f"/cases/{case_number}/reassign",
                         data={"csrf_token": token, "to": people["provider"]})
    assert "is not a dermatologist" in refused.text
    closed = admin.post(f"/cases/{case_number}/close", data={"csrf_token": token})
    assert f"{case_number} is closed." in closed.text and "Close the case" not in closed.text
    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.state == "closed" and case.assignee.email == people["derm2"]
        actions = session.execute(select(AuditEvent.action, AuditEvent.actor).where(
            AuditEvent.actor == people["admin"], AuditEvent.action.like("case.%"))).all()
        emailed = session.execute(select(OutboundMessage.to_addr).where(
            OutboundMessage.kind == "derm_case")).scalars().all()
    assert ("case.reassigned", people["admin"]) in actions
    assert ("case.closed", people["admin"]) in actions
    assert people["derm2"] in emailed
    assert case_number not in admin.get("/").text  # no longer open


def test_quarantine_reprocess_and_discard(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    first, second = held_message(app, "Hello"), held_message(app, "Hello again")
    admin = web(people["admin"])
    page = admin.get("/quarantine")
    assert STRANGER in page.text and "unregistered" in page.text
    assert [m["id"] for m in admin.get("/api/quarantine").json()] == [second, first]
    token = csrf_of(page.text)
    response = admin.post(f"/quarantine/{first}/reprocess", data={"csrf_token": token})
    assert "will be processed again" in response.text
    response = admin.post(f"/quarantine/{second}/discard", data={"csrf_token": token})
    assert "discarded" in response.text
    again = admin.post(f"/quarantine/{second}/discard", data={"csrf_token": token})
    assert "not in quarantine" in again.text
    with app.sessions() as session:
        assert session.get(InboundMessage, first).status == MessageStatus.RECEIVED
        assert session.get(InboundMessage, first).attempts == 0
        assert session.get(InboundMessage, second).status == MessageStatus.DISCARDED
        audited = session.execute(select(AuditEvent.action, AuditEvent.entity_id).where(
            AuditEvent.actor == people["admin"])).all()
    assert ("message.reprocess", str(first)) in audited
    assert ("message.discarded", str(second)) in audited
    drain(app)  # the worker takes it again (and holds it again: still a stranger)
    with app.sessions() as session:
        assert session.get(InboundMessage, first).status == MessageStatus.QUARANTINED
    assert admin.post("/quarantine/99999/discard", data={"csrf_token": token}).status_code == 404


def test_outbox_lists_dead_deliveries_and_retries_them(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    with transaction(app.sessions) as session:
        row = session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id)).scalars().first()
        row.status, row.attempts, row.last_error = OutboxStatus.DEAD, 8, "550 5.1.1 no such user"
        dead_id = row.id
    admin = web(people["admin"])
    page = admin.get("/outbox")
    assert "550 5.1.1 no such user" in page.text and "Retry now" in page.text
    listed = {o["id"]: o for o in admin.get("/api/outbox").json()}
    assert listed[dead_id]["status"] == "dead" and listed[dead_id]["retryable"]
    response = admin.post(f"/outbox/{dead_id}/retry", data={"csrf_token": csrf_of(page.text)})
    assert "will be delivered" in response.text
    with app.sessions() as session:
        row = session.get(OutboundMessage, dead_id)
        assert row.status == OutboxStatus.QUEUED and row.attempts == 0
        retried = session.execute(select(AuditEvent).where(
            AuditEvent.action == "outbox.retry")).scalar_one()
    assert retried.actor == people["admin"]
