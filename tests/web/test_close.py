"""A case closed on the web or from the command line tells the same people as a close by
email would: the provider and the dermatologist (the closer, an admin, is not on the case)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import AuditEvent, Case, OutboundMessage
from tests.support.cli import run_cli
from tests.support.web import csrf_of


@pytest.mark.parametrize("door", ["web", "cli"])
def test_closing_a_case_tells_the_provider_and_the_dermatologist(
    app: App, config: Config, people: dict[str, str],
    web: Callable[[str | None], TestClient], case_number: str, door: str,
) -> None:
    if door == "web":
        admin = web(people["admin"])
        token = csrf_of(admin.get(f"/cases/{case_number}").text)
        page = admin.post(f"/cases/{case_number}/close", data={"csrf_token": token})
        assert f"{case_number} is closed." in page.text
        actor = people["admin"]
    else:
        out = run_cli(config, "cases", "close", case_number).stdout
        assert f"{case_number} closed" in out
        actor = "cli"
    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        told = session.execute(select(OutboundMessage.to_addr).where(
            OutboundMessage.kind == "case_closed")).scalars().all()
        closed_by = session.execute(select(AuditEvent.actor).where(
            AuditEvent.action == "case.closed")).scalars().all()
    assert case.state == "closed"
    assert sorted(told) == sorted([people["provider"], people["derm"]])
    assert closed_by == [actor]
    if door == "cli":  # closed already: nobody is told twice
        assert "already closed" in run_cli(config, "cases", "close", case_number).stdout
        with app.sessions() as session:
            again = session.execute(select(OutboundMessage.id).where(
                OutboundMessage.kind == "case_closed")).all()
        assert len(again) == 2
