"""Urgency on the web (issue #9 item 1): a provider's comment raises it, the provider cannot
lower it, the assigned dermatologist (or an admin) can, and every change is audited."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, Case, OutboundMessage
from tests.support.cases import send_case
from tests.support.cli import cli_json, run_cli
from tests.support.mail import FULL_FORM
from tests.support.web import csrf_of

ET = ZoneInfo("America/New_York")


def _case(app: App, number: str) -> Case:
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        session.expunge(case)
        return case


def _kinds(app: App) -> list[tuple[str, str]]:
    with app.sessions() as session:
        return [(o.kind, o.to_addr) for o in session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id)).scalars()]


def test_urgency_from_the_web_comment_and_the_case_page(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False) as clock:
        number = send_case(app, people["provider"])
        provider = web(people["provider"])
        page = provider.get(f"/cases/{number}").text
        assert "Mark urgent" in page
        clock.move_to(datetime(2026, 11, 30, 9, 30, tzinfo=ET))
        provider.post(f"/cases/{number}/comment", data={
            "body": "It is spreading fast.\nUrgency: urgent", "csrf_token": csrf_of(page)})
        case = _case(app, number)
        assert case.urgency == "urgent"
        assert case.sla_deadline == datetime(2026, 11, 30, 10, 0, tzinfo=ET)
        assert ("urgent_page", people["derm"]) in _kinds(app)
        assert ("comment_forward", people["derm"]) in _kinds(app)

        page = provider.get(f"/cases/{number}").text
        assert "Mark urgent" not in page and "Change urgency" not in page
        done = provider.post(f"/cases/{number}/urgency", data={
            "urgency": "routine", "csrf_token": csrf_of(page)}, follow_redirects=False)
        assert done.status_code == 303
        assert _case(app, number).urgency == "urgent"

        stranger = web(people["derm2"])  # not assigned: may not touch it
        refused = stranger.post(f"/cases/{number}/urgency", data={
            "urgency": "routine", "csrf_token": csrf_of(stranger.get("/").text)})
        assert refused.status_code == 403

        derm = web(people["derm"])
        page = derm.get(f"/cases/{number}").text
        assert "Change urgency" in page
        derm.post(f"/cases/{number}/urgency", data={"urgency": "routine",
                                                     "csrf_token": csrf_of(page)})
        case = _case(app, number)
        assert case.urgency == "routine" and case.form["urgency"] == "routine"
        assert case.sla_deadline == datetime(2026, 11, 30, 11, 0, tzinfo=ET)
        assert ("urgency_changed", people["provider"]) in _kinds(app)
    with app.sessions() as session:
        trail = [(e.action, e.actor) for e in session.execute(
            select(AuditEvent).where(AuditEvent.action.like("case.urgency%"))
            .order_by(AuditEvent.id)).scalars()]
    assert trail == [("case.urgency", people["provider"]),
                     ("case.urgency_kept", people["provider"]),
                     ("case.urgency", people["derm"])]
    admin_page = web(people["admin"]).get(f"/cases/{number}").text
    assert "urgency by " + people["derm"] in admin_page  # on the case's timeline


def test_an_admin_lowers_urgency_on_the_web_and_by_the_cli_and_it_is_audited(
    app: App, config, people, web  # type: ignore[no-untyped-def]
) -> None:
    """Issue #9 item 1: lowering is for the assigned dermatologist or an admin; an admin not
    on the case may, by the case page or `mailflow cases urgency`; the provider still may not."""
    urgent = FULL_FORM.replace("Urgency: routine", "Urgency: urgent")
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        on_web = send_case(app, people["provider"], urgent)
        by_cli = send_case(app, people["provider"], urgent)
        provider = web(people["provider"])
        page = provider.get(f"/cases/{on_web}").text
        provider.post(f"/cases/{on_web}/urgency", data={
            "urgency": "routine", "csrf_token": csrf_of(page)}, follow_redirects=False)
        assert _case(app, on_web).urgency == "urgent"  # the provider may only raise it

        admin = web(people["admin"])
        page = admin.get(f"/cases/{on_web}").text
        assert "Change urgency" in page
        done = admin.post(f"/cases/{on_web}/urgency", data={
            "urgency": "routine", "csrf_token": csrf_of(page)}, follow_redirects=False)
        assert done.status_code == 303
        case = _case(app, on_web)
        assert case.urgency == "routine" and case.form["urgency"] == "routine"
        assert case.sla_deadline == datetime(2026, 11, 30, 11, 0, tzinfo=ET)

    # the command line is an admin at the server (it runs on the real clock)
    assert "is now routine" in run_cli(config, "cases", "urgency", by_cli, "routine").stdout
    shown = cli_json(config, "cases", "show", by_cli)
    assert shown["urgency"] == "routine" and shown["fields"]["urgency"] == "routine"
    assert cli_json(config, "sla", "explain", by_cli)["target_minutes"] == 120
    with app.sessions() as session:
        trail = [(e.entity_id, e.action, e.actor, e.detail) for e in session.execute(
            select(AuditEvent).where(AuditEvent.action.like("case.urgency%"))
            .order_by(AuditEvent.id)).scalars()]
    lowered = {"from": "urgent", "to": "routine", "role": "admin"}
    assert trail == [
        (on_web, "case.urgency_kept", people["provider"], {"asked": "routine", "kept": "urgent"}),
        (on_web, "case.urgency", people["admin"], lowered),
        (by_cli, "case.urgency", "cli", lowered),
    ]
    told = [(k, to) for k, to in _kinds(app) if k == "urgency_changed"]
    assert told == [("urgency_changed", people["provider"])] * 2  # the provider hears of both
