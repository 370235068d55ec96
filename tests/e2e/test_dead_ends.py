"""Issue #9 item 4: declines and dead ends are seen; nobody is left waiting unseen.

Through the real doors: the case and the decline arrive over SMTP, the alarm leaves through the
relay, the overview is the real web app signed in as an admin, `cases assign` is the CLI in a
subprocess.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.cli.main import build_parser
from mailflow.config import Config
from mailflow.db.models import AuditEvent
from mailflow.db.session import transaction
from mailflow.outbound.render import render_email
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from mailflow.workflow.enforcer import fire_due
from mailflow.workflow.waiting import Waiting
from mailflow.workflow.worker import sweep
from tests.conftest import DERMS, PASSWORD, make_config, write_schedules
from tests.support.cases import send_case
from tests.support.cli import cli_json, run_cli
from tests.support.mail import FULL_FORM
from tests.support.provider_mail import Sent, reply, sent_to
from tests.support.review import answer, open_case
from tests.support.roster import ET, new_case, roster_app  # noqa: F401  (a fixture)
from tests.support.sink import Delivered, RelaySink
from tests.support.web import csrf_of, sign_in

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "https://derm.example.org"
ADMIN = "admin@derm.localhost"  # schedules/sla.toml [escalation] admins
ELIGIBLE, LEAD = DERMS  # the lead is licensed in NJ only: never eligible for a NY case
OFF_DUTY = "derm.off@derm.localhost"  # licensed in NY, but with no hours on the roster
DAY = '["00:00-24:00"]'
ROSTER = f"""
timezone = "America/New_York"

[[dermatologist]]
email = "{ELIGIBLE}"
states = ["NY"]
[dermatologist.hours]
mon = {DAY}
tue = {DAY}
wed = {DAY}
thu = {DAY}
fri = {DAY}
sat = {DAY}
sun = {DAY}

[[dermatologist]]
email = "{LEAD}"
states = ["NJ"]
on_call_lead = true
[dermatologist.hours]
mon = {DAY}
tue = {DAY}
wed = {DAY}
thu = {DAY}
fri = {DAY}
sat = {DAY}
sun = {DAY}

[[dermatologist]]
email = "{OFF_DUTY}"
states = ["NY"]
"""


def command_words() -> re.Pattern[str]:
    """`mailflow <any real subcommand>`: what a recipient must never be asked to type."""
    subs = next(a for a in build_parser()._actions
                if isinstance(a, argparse._SubParsersAction))
    return re.compile(r"\bmailflow\s+(" + "|".join(map(re.escape, subs.choices)) + r")\b")


COMMAND = command_words()


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    cfg = make_config(tmp_path, db_url, web={"public_url": PUBLIC},
                      outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                                "retry_schedule_seconds": [1, 1, 1]},
                      smtp={"rate_per_minute": 1000})
    write_schedules(tmp_path, ROSTER)
    initialise(cfg)
    return cfg


def browser(app: App) -> TestClient:
    """public_url is https, so cookies are Secure: the client speaks https as a browser would."""
    return TestClient(create_web_app(app), base_url="https://testserver")


@pytest.fixture
def admin_web(app: App, dermatologists: tuple[str, str]) -> Iterator[TestClient]:
    with transaction(app.sessions) as session:
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD,
                     approved=True)
        accounts.add(session, email=OFF_DUTY, name="Dr Off Duty", role="dermatologist",
                     password=PASSWORD, approved=True)
    with browser(app) as client:
        assert sign_in(client, ADMIN).status_code == 303
        yield client


def overview_row(client: TestClient, number: str) -> str:
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'<tr class="sla-[^"]*" data-key="' + number + r'">.*?</tr>', page.text,
                      re.S)
    assert found, f"{number} is not on the overview"
    return found.group(0)


def no_commands(messages: list[Delivered]) -> None:
    for m in messages:
        shown = m.text + (m.message.get_body(("html",)).get_content()
                          if m.message.get_body(("html",)) else "")
        assert not COMMAND.search(shown), (m.message["Subject"], COMMAND.search(shown))


def test_a_decline_with_nobody_left_alarms_and_shows_at_risk_and_warns_on_reassign(
    service, app: App, sink: RelaySink, provider: str, config: Config,  # type: ignore[no-untyped-def]
    admin_web: TestClient,
) -> None:
    number, _ack, notification = open_case(service, sink, provider, ELIGIBLE)
    row = answer(service, app, ELIGIBLE, notification, "Decline: outside my expertise")
    assert row.route == "decline" and "lead and admins told" in row.outcome
    reason = ("Declined by Dr Derm One: outside my expertise; "
              "no other dermatologist licensed in NY is on duty")

    # the on-call lead and the admins are told at once, with a link and no command line
    for person in (LEAD, ADMIN):
        alarm = sink.wait_for(person)[0]
        assert number in str(alarm.message["Subject"])
        assert reason in " ".join(alarm.text.split())
        assert f"{PUBLIC}/cases/{number}" in alarm.text
    assert cli_json(config, "cases", "show", number)["state"] == "submitted"
    with browser(app) as lead:  # the link works for the on-call lead too
        assert sign_in(lead, LEAD).status_code == 303
        followed = lead.get(f"/cases/{number}")
        assert followed.status_code == 200 and reason in followed.text

    # the overview: at risk, with the reason in plain words
    listed = overview_row(admin_web, number)
    assert 'class="sla-at-risk"' in listed and reason in listed

    # `cases assign` to the one who declined: refused, with their reason, unless --force
    refused = run_cli(config, "cases", "assign", number, "--to", ELIGIBLE, check=False)
    assert refused.returncode == 1
    assert "declined" in refused.stderr and "outside my expertise" in refused.stderr
    assert "--force" in refused.stderr
    assert cli_json(config, "cases", "show", number)["state"] == "submitted"

    # the web: the case page marks them, and reassigning asks for confirmation first
    page = admin_web.get(f"/cases/{number}")
    assert "Dr Derm One (declined it)" in page.text and reason in page.text
    asked = admin_web.post(f"/cases/{number}/reassign",
                           data={"to": ELIGIBLE, "csrf_token": csrf_of(page.text)},
                           follow_redirects=False)
    assert asked.status_code == 200
    assert "declined this case" in asked.text and "outside my expertise" in asked.text
    assert cli_json(config, "cases", "show", number)["state"] == "submitted"
    done = admin_web.post(f"/cases/{number}/reassign",
                          data={"to": ELIGIBLE, "confirm": "yes",
                                "csrf_token": csrf_of(asked.text)},
                          follow_redirects=False)
    assert done.status_code == 303
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "assigned" and shown["assignee"] == ELIGIBLE

    # declined again; this time the CLI goes ahead with --force, and says what it overrode
    again = sink.wait_for(ELIGIBLE, count=2)[1]
    answer(service, app, ELIGIBLE, again, "Decline: still not mine")
    sink.wait_for(LEAD, count=2)
    assert "declined by Dr Derm One: still not mine" in overview_row(admin_web, number)
    forced = run_cli(config, "cases", "assign", number, "--to", ELIGIBLE, "--force")
    assert "warning" in forced.stderr and "still not mine" in forced.stderr
    assert cli_json(config, "cases", "show", number)["assignee"] == ELIGIBLE
    no_commands(sink.messages)

    # the lead reads open cases only: once closed, it is not theirs to read
    page = admin_web.get(f"/cases/{number}")
    admin_web.post(f"/cases/{number}/close", data={"csrf_token": csrf_of(page.text)})
    with browser(app) as lead:
        assert sign_in(lead, LEAD).status_code == 303
        assert lead.get(f"/cases/{number}").status_code == 403


def rows_seen_by_admin(app: App) -> dict[str, str]:
    """The overview's rows, by the case number's last digit, as an admin sees them now."""
    with browser(app) as client:
        assert sign_in(client, ADMIN).status_code == 303
        numbers = re.findall(r'data-key="(DERM-[^"]+)"', client.get("/").text)
        return {n[-1]: overview_row(client, n) for n in numbers}


def test_the_overview_says_why_a_case_waits_when_nobody_can_take_it(
    roster_app: App,  # noqa: F811  (the fixture imported above)
) -> None:
    """Not only after a decline: nobody on duty, nobody licensed, everybody at their limit."""
    with transaction(roster_app.sessions) as session:
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD,
                     approved=True)
    with time_machine.travel(datetime(2026, 11, 28, 10, 0, tzinfo=ET), tick=False):  # Saturday
        new_case(roster_app, "doc.ny@clinic.test", 1)
        saturday = rows_seen_by_admin(roster_app)["1"]
    assert ("No dermatologist licensed in NY is on duty; the next comes on duty Monday at "
            "9:00 ET") in saturday
    assert 'class="sla-at-risk"' not in saturday  # expected: nobody works weekends
    with time_machine.travel(datetime(2026, 11, 30, 12, 30, tzinfo=ET), tick=False):  # Monday
        sweep(roster_app)  # the NY case goes to the NY derm, whose limit is one case
        new_case(roster_app, "doc.nj@clinic.test", 2)  # the NJ derm is at lunch until 13:00
        new_case(roster_app, "doc.ny@clinic.test", 3)
        new_case(roster_app, "doc.ca@clinic.test", 4)  # nobody is licensed in CA
        monday = rows_seen_by_admin(roster_app)
    assert "waiting-reason" not in monday["1"]
    assert ("No dermatologist licensed in NJ is on duty; the next comes on duty today at "
            "13:00 ET") in monday["2"] and 'class="sla-at-risk"' not in monday["2"]
    assert ("Every dermatologist licensed in NY on duty has reached their limit of open "
            "cases") in monday["3"] and 'class="sla-at-risk"' in monday["3"]
    assert "No dermatologist on the roster is licensed in CA" in monday["4"]
    assert 'class="sla-at-risk"' in monday["4"]


def test_no_email_template_shows_a_command_line() -> None:
    """Every email template, as written: links to the case page, never `mailflow ...`."""
    shown = {path.name: COMMAND.findall(path.read_text())
             for path in (ROOT / "templates" / "email").glob("*.j2")}
    assert {name: found for name, found in shown.items() if found} == {}
    assert COMMAND.search("run: mailflow cases assign DERM-2026-000001 --to x")  # it can fail


def test_without_phi_in_email_the_alarm_leaves_the_decline_reason_on_the_case_page(
    config: Config,
) -> None:
    """A decline's own words may name the patient: with phi_in_email = false they stay home."""
    waiting = Waiting("Declined by Dr A: the patient is my neighbour; no other dermatologist "
                      "licensed in NY is on duty", True,
                      "no other dermatologist licensed in NY is on duty")
    case = SimpleNamespace(number="DERM-2026-000001", urgency="routine")
    rendered = render_email(ROOT / "templates", "case_stuck", {
        "config": config, "case": case, "phi": False, "recipient": None, "waiting": waiting,
        "case_url": f"{PUBLIC}/cases/{case.number}", "decliner": "Dr A", "due_words": ""})
    for part in (rendered.text, rendered.html):
        assert "neighbour" not in part
        assert "Dr A" in part and "no other dermatologist licensed in NY is on duty" in part
        assert f"{PUBLIC}/cases/{case.number}" in part


def add_admin(app: App) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD,
                     approved=True)


def links_to_the_case_page(sent: Sent, number: str) -> None:
    """Items 1 and 4: the page names the case page at public_url, as a link in the HTML part,
    and never a command to type."""
    url = f"{PUBLIC}/cases/{number}"
    assert url in sent.text, (sent.kind, sent.text)
    assert f'href="{url}"' in sent.html, (sent.kind, sent.html)
    for part in (sent.text, sent.html):
        assert not COMMAND.search(part), (sent.kind, COMMAND.search(part))


def test_the_urgent_page_and_the_breach_escalation_link_to_the_case_page(
    app: App, provider: str, dermatologists: tuple[str, str],
) -> None:
    add_admin(app)
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):  # Monday
        number = send_case(app, provider, FULL_FORM.replace("Urgency: routine",
                                                            "Urgency: urgent"))
    page = [s for s in sent_to(app, LEAD) if s.kind == "urgent_page"]
    assert len(page) == 1 and number in str(page[0].message["Subject"])
    links_to_the_case_page(page[0], number)

    with time_machine.travel(datetime(2026, 11, 30, 10, 30, tzinfo=ET), tick=False):
        fire_due(app)  # past the urgent hour: the breach is escalated
    for person in (LEAD, ADMIN):
        escalation = [s for s in sent_to(app, person) if s.kind == "sla_escalation"]
        assert len(escalation) == 1, (person, [s.kind for s in sent_to(app, person)])
        assert number in str(escalation[0].message["Subject"])
        links_to_the_case_page(escalation[0], number)


def test_a_forced_reassignment_to_the_decliner_is_audited_despite_the_decline(
    app: App, provider: str, dermatologists: tuple[str, str], config: Config,
) -> None:
    """Item 4: the audit says the admin overrode the decline, from the CLI and from the web."""
    add_admin(app)
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        number = send_case(app, provider)

        def decline(reason: str) -> None:
            notice = [s for s in sent_to(app, ELIGIBLE) if s.kind == "derm_case"][-1]
            reply(app, notice, ELIGIBLE, f"Decline: {reason}")
            assert cli_json(config, "cases", "show", number)["state"] == "submitted"

        decline("outside my expertise")
        run_cli(config, "cases", "assign", number, "--to", ELIGIBLE, "--force")
        decline("still not mine")
        with browser(app) as client:
            assert sign_in(client, ADMIN).status_code == 303
            asked = client.post(f"/cases/{number}/reassign", data={
                "to": ELIGIBLE, "csrf_token": csrf_of(client.get(f"/cases/{number}").text)})
            client.post(f"/cases/{number}/reassign", data={
                "to": ELIGIBLE, "confirm": "yes", "csrf_token": csrf_of(asked.text)})
    assert cli_json(config, "cases", "show", number)["assignee"] == ELIGIBLE
    with app.sessions() as session:
        assigned = [(e.actor, e.detail) for e in session.execute(
            select(AuditEvent).where(AuditEvent.entity_id == number,
                                     AuditEvent.action.in_(("case.assigned", "case.reassigned")))
            .order_by(AuditEvent.id)).scalars()]
    derm_id = assigned[0][1]["assignee"]
    assert [(actor, d["to"], d["assignee"], d.get("despite_decline"))
            for actor, d in assigned] == [
        ("system", "assigned", derm_id, None),  # the first, by the roster: nothing overridden
        ("cli", "assigned", derm_id, True),
        (ADMIN, "assigned", derm_id, True),
    ]
