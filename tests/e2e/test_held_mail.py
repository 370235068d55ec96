"""Issue #9 item 5: nobody waits unanswered. A reply-all to a case's thread plus cases@ goes to
that case (unless it names another patient); a message held from a signed-in sender gets a
short reply saying why and what to do; a stranger's held message gets nothing (no
backscatter); an admin can attach a held message to the case it belongs to (web and CLI)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.db.models import AuditEvent, Case, MessageStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import run_cli
from tests.support.db import accepted_id, case_count, outbox, wait_final
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.sink import RelaySink

COLLEAGUE = "dr.colleague@clinic.test"


def send(service: RunningService, who: str, msg: object, rcpt: list[str]) -> int:
    code, text = submit(service.port, who, PASSWORD, msg, rcpt=rcpt)  # type: ignore[arg-type]
    assert code == 250, text
    return accepted_id(text)


def held_notices(app: App, to: str) -> list[str]:
    return [m.to_addr for m in outbox(app) if m.kind == "held" and m.to_addr == to]


def open_case(service: RunningService, sink: RelaySink, provider: str,
              photos: int = 3) -> tuple[Case, str]:
    row = wait_final(service.app, send(service, provider, case_email(
        provider, CASES, FULL_FORM, three_photos()[:photos]), [CASES]))
    with service.app.sessions() as session:
        case = session.get(Case, row.case_id)
    assert case is not None
    ack = wait_until(lambda: [d for d in sink.to(provider)
                              if case.number in d.message["Subject"]], what="the ack")[0]
    return case, ack.message["Reply-To"].addresses[0].addr_spec


def test_a_reply_all_with_cases_goes_to_the_case_its_signed_address_names(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    case, address = open_case(service, sink, provider, photos=2)
    assert case.state == "incomplete"
    third = three_photos()[2:]
    row = wait_final(app, send(service, provider, case_email(
        provider, f"{address}, {CASES}", "Here is the third photo.", third), [address, CASES]))
    assert (row.status, row.case_id) == (MessageStatus.PROCESSED, case.id), row.outcome
    assert case_count(app) == 1
    with app.sessions() as session:
        assert session.get(Case, case.id).state in ("submitted", "assigned")
    assert held_notices(app, provider) == []


def test_a_reply_all_naming_another_patient_is_held_and_the_provider_is_told(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    case, address = open_case(service, sink, provider)
    other = FULL_FORM.replace("Jane Testpatient", "John Otherpatient")
    row = wait_final(app, send(service, provider, case_email(
        provider, f"{address}, {CASES}", other, three_photos()), [address, CASES]))
    assert (row.status, row.reason_code) == (MessageStatus.QUARANTINED, "another-patient")
    assert case_count(app) == 1  # John's history is on no case, and not on Jane's
    told = sink.wait_for(provider, count=2)[-1]
    assert told.message["Subject"] == "Your message is waiting for our team"
    assert "names a different patient" in told.text
    assert f"send it again to {CASES} only" in " ".join(told.text.split())
    assert "John" not in told.text and "Jane" not in told.text  # no patient data in it
    assert told.message["Auto-Submitted"] == "auto-replied"


def test_held_mail_from_a_signed_in_sender_is_answered_in_plain_words(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email=COLLEAGUE, name="Dr Colleague", role="provider",
                     password=PASSWORD, approved=True, license_state="NY")
    _case, address = open_case(service, sink, provider)
    # a colleague answers on the address issued to the case's provider
    row = wait_final(app, send(service, COLLEAGUE, case_email(
        COLLEAGUE, address, "I saw this patient too."), [address]))
    assert row.reason_code == "wrong-participant"
    told = sink.wait_for(COLLEAGUE)[0]
    assert "given to someone else" in told.text
    assert "wrong-participant" not in told.text and "quarantine" not in told.text.lower()
    # a mistyped case address: the provider is told too, once per message
    local, _, domain = address.partition("@")
    mistyped = f"{local[:-4]}{'zzzz' if local[-4:] != 'zzzz' else 'aaaa'}@{domain}"
    row = wait_final(app, send(service, provider, case_email(provider, mistyped, "More."),
                               [mistyped]))
    assert row.reason_code == "forged-address"
    assert "not one we gave out" in sink.wait_for(provider, count=2)[-1].text
    assert len(held_notices(app, provider)) == 1


def test_a_held_message_from_an_unverified_sender_gets_no_reply(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    config = make_config(tmp_path, db_url, smtp={"require_auth": False},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email="doc@hospital.org", name="Dr Hospital", role="provider",
                     approved=True)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        code, text = submit(running.port, None, None, case_email(
            "doc@hospital.org", CASES, FULL_FORM, three_photos()), "doc@hospital.org", [CASES])
        assert code == 250, text
        row = wait_final(app, accepted_id(text))
        assert row.reason_code == "unverified"  # From: can be forged: no backscatter
        # the outbox runs: anything queued would be in the outbox table by now
        assert [m for m in outbox(app) if m.to_addr == "doc@hospital.org"] == []
    finally:
        running.stop()
        app.close()


def test_an_admin_attaches_a_held_message_to_its_case_from_the_cli(
    service: RunningService, app: App, sink: RelaySink, provider: str,
    dermatologists: tuple[str, str],
) -> None:
    _first, first_address = open_case(service, sink, provider)
    second, _ = open_case(service, sink, provider)
    # meant for the second case, sent on the first case's thread with cases@ and the second
    # patient's name: held
    form = FULL_FORM.replace("Jane Testpatient", "John Otherpatient")
    row = wait_final(app, send(service, provider, case_email(
        provider, f"{first_address}, {CASES}", form + "\nThe rash is spreading.\n"),
        [first_address, CASES]))
    assert row.reason_code == "another-patient"
    refused = run_cli(app.config, "messages", "attach", str(row.id), "--case",
                      "DERM-2026-999999", check=False)
    assert refused.returncode != 0 and "no case DERM-2026-999999" in refused.stderr
    done = run_cli(app.config, "messages", "attach", str(row.id), "--case", second.number)
    assert second.number in done.stdout
    row = wait_until(lambda: (r := wait_final(app, row.id)).status == MessageStatus.PROCESSED
                     and r, what="the attached message to be processed")
    assert row.case_id == second.id and row.attached_by == "cli"
    with app.sessions() as session:
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "message.attached")).scalar_one()
        assert (event.case_id, event.actor) == (second.id, "cli")
