"""Issue #9 items 1-3: urgency raised (or not lowered) by reply, patient fields that arrive
late, photo consent. Through the real doors: SMTP in, the relay sink out, the CLI as a
subprocess, the web app, the PDF read back; time frozen with time-machine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import AuditEvent
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from mailflow.workflow.enforcer import fire_due
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import wait_final
from tests.support.mail import FULL_FORM, case_email, reply_to, wait_until
from tests.support.review import ANSWER, pdf_of, pdf_text, send
from tests.support.sink import Delivered, RelaySink
from tests.support.web import sign_in

ET = ZoneInfo("America/New_York")
ADMIN = "admin@derm.localhost"
CASE_NUMBER = re.compile(r"DERM-\d{4}-\d{6}")
RED_FLAG_FORM = FULL_FORM.replace("Symptoms: itch, worse at night",
                                  "Symptoms: a mole on the back that started to bleed")
URGENT_FORM = FULL_FORM.replace("Urgency: routine", "Urgency: urgent")


def et(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, hour, minute, tzinfo=ET)  # a Monday


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(et(9, 0), tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(app: App) -> str:
    with transaction(app.sessions) as session:
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin",
                     password=PASSWORD, approved=True)
    return ADMIN


def subject(message: Delivered) -> str:
    return str(message.message["Subject"])


def mail_to(sink: RelaySink, address: str, words: str, count: int = 1) -> list[Delivered]:
    """Messages to `address` whose subject has `words` (waits for `count` of them)."""
    def found() -> list[Delivered]:
        return [m for m in sink.to(address) if words in subject(m)]
    return wait_until(lambda: len(found()) >= count and found(), 30,
                      f"{count} message(s) '{words}' to {address}")


def open_case(service: RunningService, sink: RelaySink, provider: str, form: str,
              photos: bool = True) -> tuple[str, Delivered]:
    msg = case_email(provider, CASES, form, three_photos() if photos else [])
    wait_final(service.app, send(service, provider, msg))
    ack = sink.wait_for(provider)[-1]
    return CASE_NUMBER.search(subject(ack)).group(0), ack


def write(service: RunningService, who: str, to: Delivered, body: str) -> None:
    msg, address = reply_to(to, who, body)
    wait_final(service.app, send(service, who, msg, address))


def deadline(config: Config, number: str) -> datetime:
    return datetime.fromisoformat(cli_json(config, "sla", "explain", number)["deadline"])


def consult_pdf(service: RunningService, sink: RelaySink, provider: str, derm: str,
                number: str) -> str:
    notification = mail_to(sink, derm, f"Case {number} for review")[0]
    write(service, derm, notification, ANSWER)
    return pdf_text(pdf_of(mail_to(sink, provider, "consult report")[0]))


def web_page(app: App, email: str, path: str) -> str:
    with TestClient(create_web_app(app)) as client:
        assert sign_in(client, email).status_code == 303
        response = client.get(path)
        assert response.status_code == 200
        return response.text


def test_the_providers_reply_makes_the_case_urgent_everywhere(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], admin: str, clock: time_machine.Coordinates,
) -> None:
    lead = dermatologists[0]  # the roster's on-call lead
    number, ack = open_case(service, sink, provider, RED_FLAG_FORM)
    assert "POSSIBLY URGENT" in ack.text and "Urgency: urgent" in ack.text
    assert deadline(config, number) == et(11, 0)  # routine: 120 business minutes

    clock.move_to(et(9, 20))
    write(service, provider, ack, "Urgency: urgent")

    assert deadline(config, number) == et(10, 0)  # 20 minutes used, 40 left of 60
    page = mail_to(sink, lead, "URGENT case")[0]
    assert number in subject(page) and "raised to urgent" in subject(page)
    assert "the referring provider raised it" in page.text and "by 10:00 ET today" in page.text
    told = mail_to(sink, provider, "now URGENT")[0]
    assert "A skin doctor will answer by 10:00 ET today (within 1 working hour)" in told.text
    shown = cli_json(config, "cases", "show", number)
    assert shown["urgency"] == "urgent" and shown["fields"]["urgency"] == "urgent"
    explained = run_cli(config, "sla", "explain", number).stdout
    assert "urgency" in explained and f"routine to urgent by {provider}" in explained

    overview = web_page(app, admin, "/")
    row = next(r for r in overview.split("<tr") if number in r)
    assert 'class="badge urgent"' in row
    case_page = web_page(app, admin, f"/cases/{number}")
    assert 'class="badge urgent"' in case_page.split("</h1>")[0]

    clock.move_to(et(9, 40))
    report = consult_pdf(service, sink, provider, lead, number)
    assert "target 1 h 0 min, urgent" in report and "target 2 h" not in report
    assert "URGENT" in report and "Urgency urgent" not in report  # the header badge, not history


def test_a_provider_cannot_lower_urgency_but_the_dermatologist_can_and_it_is_audited(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], clock: time_machine.Coordinates,
) -> None:
    derm = dermatologists[0]
    number, ack = open_case(service, sink, provider, URGENT_FORM)
    assert deadline(config, number) == et(10, 0)

    clock.move_to(et(9, 10))
    write(service, provider, ack, "Urgency: routine")
    kept = mail_to(sink, provider, "it stays urgent")[0]
    assert "skin doctor reviewing it" in kept.text
    assert cli_json(config, "cases", "show", number)["urgency"] == "urgent"
    assert deadline(config, number) == et(10, 0)

    clock.move_to(et(9, 15))
    notification = mail_to(sink, derm, f"Case {number} for review")[0]
    write(service, derm, notification, "Urgency: routine")
    assert cli_json(config, "cases", "show", number)["urgency"] == "routine"
    assert deadline(config, number) == et(11, 0)  # 15 used, 105 left of 120
    told = mail_to(sink, provider, "now routine")[0]
    assert "Dr Derm One, the reviewing dermatologist" in told.text
    with app.sessions() as session:
        changes = [(e.actor, e.detail) for e in session.execute(
            select(AuditEvent).where(AuditEvent.action.in_(("case.urgency",
                                                            "case.urgency_kept")))
            .order_by(AuditEvent.id)).scalars()]
    assert changes == [
        (provider, {"asked": "routine", "kept": "urgent"}),
        (derm, {"from": "urgent", "to": "routine", "role": "dermatologist"}),
    ]

    # an admin raises it again (the CLI runs on the real clock: only the target is known)
    assert "is now urgent" in run_cli(config, "cases", "urgency", number, "urgent").stdout
    assert cli_json(config, "cases", "show", number)["urgency"] == "urgent"
    explained = cli_json(config, "sla", "explain", number)
    assert explained["target_minutes"] == 60
    assert explained["events"][-1]["detail"]["reason"] == "routine to urgent by cli"


def test_a_case_raised_past_the_urgent_deadline_breaches_at_the_next_enforcer_pass(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], admin: str, clock: time_machine.Coordinates,
) -> None:
    number, ack = open_case(service, sink, provider, FULL_FORM)
    clock.move_to(et(10, 30))  # 90 business minutes used: past the urgent 60
    write(service, provider, ack, "Urgency: urgent")
    assert deadline(config, number) == et(10, 30)
    page = mail_to(sink, dermatologists[0], "URGENT case")[0]
    assert "already used up" in page.text
    assert fire_due(app) == 1  # the warnings are moot; the breach is given
    escalations = mail_to(sink, admin, "SLA BREACH")
    assert number in subject(escalations[0])
    kinds = [e["kind"] for e in cli_json(config, "sla", "explain", number)["events"]]
    assert kinds == ["start", "urgency", "warning", "warning", "breach"]


def test_an_incomplete_case_made_urgent_starts_its_clock_on_the_urgent_policy(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], admin: str, clock: time_machine.Coordinates,
) -> None:
    form = FULL_FORM.replace("Date of birth: 1961-03-04\n", "")
    number, ack = open_case(service, sink, provider, form)
    assert "more needed" in subject(ack)

    clock.move_to(et(9, 30))
    write(service, provider, ack, "Date of birth: 1961-03-04\nUrgency: urgent")
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "assigned" and shown["urgency"] == "urgent"
    assert shown["patient"]["date_of_birth"] == "1961-03-04"
    assert deadline(config, number) == et(10, 30)  # started complete at 9:30, urgent
    assert len(mail_to(sink, dermatologists[0], "URGENT case")) == 1
    told = sink.wait_for(provider, count=2)[-1].text  # the acknowledgement, then this
    assert "A skin doctor will answer by 10:30 ET today (urgent: within" in told

    clock.move_to(et(9, 45))
    report = consult_pdf(service, sink, provider, dermatologists[0], number)
    assert "DOB 1961-03-04 · female" in report and "target 1 h 0 min, urgent" in report
    assert "1961-03-04" in web_page(app, admin, f"/cases/{number}")


def test_urgency_raised_while_waiting_for_the_provider_counts_from_the_resume(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], clock: time_machine.Coordinates,
) -> None:
    derm = dermatologists[0]
    number, ack = open_case(service, sink, provider, FULL_FORM)
    clock.move_to(et(9, 30))
    write(service, derm, mail_to(sink, derm, f"Case {number} for review")[0],
          "More info: Is the rash itchy at night?")
    clock.move_to(et(9, 40))
    write(service, provider, ack, "Urgency: urgent")
    shown = cli_json(config, "cases", "show", number)
    assert (shown["state"], shown["urgency"]) == ("needs_info", "urgent")
    assert "waiting for your answer" in mail_to(sink, provider, "now URGENT")[0].text
    clock.move_to(et(10, 0))
    write(service, provider, mail_to(sink, provider, "question")[0], "Yes, worse at night.")
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    assert deadline(config, number) == et(10, 30)  # 30 used, 30 left of 60 from 10:00


def test_every_patient_field_given_in_the_completing_reply_reaches_the_report(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], admin: str, clock: time_machine.Coordinates,
) -> None:
    form = (FULL_FORM.replace("Date of birth: 1961-03-04\n", "").replace("Sex: female\n", "")
            .replace("Chart/MRN: MRN-0001\n", ""))
    number, ack = open_case(service, sink, provider, form)
    assert cli_json(config, "cases", "show", number)["patient"]["date_of_birth"] is None
    write(service, provider, ack, "DOB: 1961-03-04\nSex: F\nMRN: MRN-0042")
    shown = cli_json(config, "cases", "show", number)
    assert shown["patient"] == {"name": "Jane Testpatient", "date_of_birth": "1961-03-04",
                                "sex": "female", "mrn": "MRN-0042"}
    page = web_page(app, admin, f"/cases/{number}")
    assert "<dd>1961-03-04</dd>" in page and "<dd>MRN-0042</dd>" in page
    report = consult_pdf(service, sink, provider, dermatologists[0], number)
    assert "DOB 1961-03-04 · female" in report and "MRN MRN-0042" in report


@pytest.mark.parametrize("consent", ["", "Patient consent to photos: no\n"])
def test_photos_are_reviewed_only_with_the_patients_consent(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], consent: str,
) -> None:
    form = FULL_FORM.replace("Patient consent to photos: yes\n", consent)
    number, ack = open_case(service, sink, provider, form)
    assert "more needed" in subject(ack)
    assert cli_json(config, "cases", "show", number)["state"] == "incomplete"
    if consent:
        plain = " ".join(ack.text.split())
        assert "We cannot review the photos without the patient's consent" in plain
    else:
        assert "Patient consent to photos (reply \"Patient consent to photos: yes\"" in ack.text
    assert not [m for m in sink.to(dermatologists[0]) if number in subject(m)]
    write(service, provider, ack, "Patient consent to photos: yes")
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    # the worker is done; the outbox delivers on its own thread: wait for the second email
    assert "is now complete" in sink.wait_for(provider, count=2)[-1].text
