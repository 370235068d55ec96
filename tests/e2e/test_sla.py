"""Issue #4: the two-business-hour promise, exact and enforced (time-machine, never sleeps)."""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from datetime import datetime
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, Case, OutboundMessage, SlaEvent
from mailflow.spool import Arrival, spool
from mailflow.workflow.enforcer import fire_due, recompute_open
from mailflow.workflow.worker import drain
from tests.conftest import DERMS
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.mail import FULL_FORM, case_email
from tests.support.provider_mail import provider_app
from tests.support.review import ANSWER

ET = ZoneInfo("America/New_York")
PROVIDER = "doc@clinic.test"


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    with provider_app(tmp_path, db_url) as application:
        yield application


def deliver(app: App, raw: bytes, sender: str, rcpt: str) -> None:
    spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=(rcpt,), auth_user=sender))
    drain(app)


def send_case(app: App, form: str = FULL_FORM) -> Case:
    deliver(app, case_email(PROVIDER, CASES, form, three_photos()).as_bytes(), PROVIDER, CASES)
    with app.sessions() as session:
        return session.execute(select(Case).order_by(Case.id.desc())).scalars().first()


def sent(app: App, kind: str) -> list[email.message.EmailMessage]:
    with app.sessions() as session:
        rows = session.execute(
            select(OutboundMessage).where(OutboundMessage.kind == kind).order_by(OutboundMessage.id)
        ).scalars().all()
    return [email.message_from_bytes(app.blobs.get(r.blob_sha), policy=default_policy)
            for r in rows]


def text_of(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def reply(app: App, to: email.message.EmailMessage, sender: str, body: str) -> None:
    address = to["Reply-To"].addresses[0].addr_spec
    msg = case_email(sender, address, body, subject=f"Re: {to['Subject']}",
                     headers={"In-Reply-To": to["Message-ID"]})
    deliver(app, msg.as_bytes(), sender, address)


@pytest.mark.parametrize("received, deadline, words", [
    (et(2026, 11, 27, 16, 30), et(2026, 11, 30, 10, 30), "by 10:30 ET Monday"),  # Friday
    (et(2026, 11, 28, 10, 0), et(2026, 11, 30, 11, 0), "by 11:00 ET Monday"),  # Saturday
    (et(2026, 11, 30, 8, 15), et(2026, 11, 30, 11, 0), "by 11:00 ET today"),
    (et(2026, 11, 30, 16, 59), et(2026, 12, 1, 10, 59), "by 10:59 ET tomorrow (Tuesday)"),
    (et(2026, 11, 25, 16, 0), et(2026, 11, 27, 10, 0), "by 10:00 ET Friday"),  # Thanksgiving
    (et(2026, 3, 6, 16, 0), et(2026, 3, 9, 10, 0), "by 10:00 ET Monday"),  # DST starts Sunday
    (et(2026, 10, 30, 16, 0), et(2026, 11, 2, 10, 0), "by 10:00 ET Monday"),  # DST ends Sunday
])
def test_the_acknowledgement_promises_the_exact_deadline(
    app: App, received: datetime, deadline: datetime, words: str
) -> None:
    with time_machine.travel(received, tick=False):
        case = send_case(app)
    assert case.sla_deadline == deadline
    ack = text_of(sent(app, "ack")[0])
    assert f"A skin doctor will answer {words}." in ack
    outside = received.weekday() >= 5 or not (9 <= received.hour < 17)
    assert ("We got it outside working hours, so we start at" in ack) == outside
    shown = run_cli(app.config, "sla", "due", "--at", received.isoformat()).stdout
    assert shown.splitlines()[0] == deadline.isoformat()


def test_a_pause_over_the_weekend_adds_nothing(app: App) -> None:
    with time_machine.travel(et(2026, 11, 27, 15, 0), tick=False):  # Friday 15:00
        case = send_case(app)
    with time_machine.travel(et(2026, 11, 27, 16, 0), tick=False):  # 60 minutes used
        reply(app, sent(app, "derm_case")[0], DERMS[0], "More info: Is it itchy?")
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):  # Monday 10:00
        reply(app, sent(app, "more_info")[0], PROVIDER, "Yes, very itchy at night.")
    with app.sessions() as session:
        case = session.get(Case, case.id)
        assert case.state == "assigned"
        assert case.sla_consumed_minutes == pytest.approx(60)
        assert case.sla_deadline == et(2026, 11, 30, 11, 0)  # 60 minutes left, from Monday 10:00
    with time_machine.travel(et(2026, 11, 30, 10, 45), tick=False):
        reply(app, sent(app, "info_forward")[0], DERMS[0], ANSWER)
    explained = cli_json(app.config, "sla", "explain", case.number)
    assert explained["met"] is True and explained["consumed_minutes"] == pytest.approx(105)
    # no scheduler ran between the steps: no reminder was due while it paused
    assert [e["kind"] for e in explained["events"]] == ["start", "pause", "resume", "met"]
    counted = [s for s in explained["segments"] if s["minutes"]]
    assert sum(s["minutes"] for s in counted) == pytest.approx(105)
    human = run_cli(app.config, "sla", "explain", case.number).stdout
    assert "Fri 2026-11-27 16:00 -> Mon 2026-11-30 10:00 EST" in human
    assert "paused: waiting for the provider" in human


def test_explain_reads_one_line_per_interval_in_whole_minutes_naming_the_holiday(
    app: App,
) -> None:
    # Wednesday before Thanksgiving, 16:00:20: 59 min 40 s that day, the rest on Friday
    with time_machine.travel(et(2026, 11, 25, 16, 0, 20), tick=False):
        case = send_case(app)
    with time_machine.travel(et(2026, 11, 27, 9, 45), tick=False):
        reply(app, sent(app, "derm_case")[0], DERMS[0], ANSWER)
    human = run_cli(app.config, "sla", "explain", case.number).stdout
    lines = human.split("how the minutes count:")[1].strip().splitlines()
    assert len(lines) == 4, human  # counted, one closed stretch, counted, deadline
    closed = "Wed 2026-11-25 17:00 -> Fri 2026-11-27 09:00 EST         -  outside hours; "
    assert lines[1].strip() == closed + "Thanksgiving Day (holiday)"
    assert "Wed 2026-11-25 16:00 -> Wed 2026-11-25 17:00 EST    60 min  business hours" \
        in lines[0]  # shown whole, adding up to the 105 used
    assert "Fri 2026-11-27 09:00 -> Fri 2026-11-27 09:45 EST    45 min  business hours" \
        in lines[2]
    assert "." not in "".join(line.split("EST")[1] for line in lines[:3])
    assert "used 105 min" in human and "deadline: Fri 2026-11-27 10:00 EST - met" in human
    explained = cli_json(app.config, "sla", "explain", case.number)
    assert [s["minutes"] for s in explained["segments"]] == [60, 0, 45]


def test_warnings_and_the_breach_fire_exactly_once_even_with_two_schedulers(app: App) -> None:
    with time_machine.travel(et(2026, 11, 30, 9, 0), tick=False):
        case = send_case(app)
    for at, expected in [(et(2026, 11, 30, 10, 30), ["warning-75"]),
                         (et(2026, 11, 30, 10, 48), ["warning-75", "warning-90"]),
                         (et(2026, 11, 30, 11, 0), ["warning-75", "warning-90", "breach"])]:
        with time_machine.travel(at, tick=False):
            results: list[int] = []

            def one_scheduler(out: list[int] = results) -> None:
                out.append(fire_due(app))

            threads = [threading.Thread(target=one_scheduler) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(results) == [0, 1]  # one scheduler gave it, the other found it done
            assert fire_due(app) == 0
        with app.sessions() as session:
            onces = session.execute(select(SlaEvent.once).where(
                SlaEvent.case_id == case.id, SlaEvent.once.is_not(None)).order_by(SlaEvent.id)
            ).scalars().all()
        assert onces == expected
    reminders = sent(app, "sla_reminder")
    assert len(reminders) == 2 and all(m["To"] == DERMS[0] for m in reminders)
    assert "75%" in text_of(reminders[0]) and "by 11:00 ET today" in text_of(reminders[0])
    escalations = sent(app, "sla_escalation")
    assert sorted(str(m["To"]) for m in escalations) == ["admin@derm.localhost", DERMS[0]]
    assert "BREACH" in str(escalations[0]["Subject"])


def test_a_restart_between_due_time_and_firing_fires_it_once(app: App) -> None:
    from mailflow.workflow.scheduler import SlaScheduler

    with time_machine.travel(et(2026, 11, 30, 9, 0), tick=False):
        case = send_case(app)
    # nothing ran at 10:30; the scheduler starts at 10:31 and its start-up sweep catches up
    with time_machine.travel(et(2026, 11, 30, 10, 31)):
        first, second = SlaScheduler(app, key="a"), SlaScheduler(app, key="b")
        first.start()
        second.start()  # two schedulers on one database
        try:
            from tests.support.mail import wait_until

            wait_until(lambda: len(sent(app, "sla_reminder")) >= 1, 20, "the missed warning")
        finally:
            first.stop()
            second.stop()
        fire_due(app)
    assert len(sent(app, "sla_reminder")) == 1
    with app.sessions() as session:
        assert session.get(Case, case.id).sla_next_kind == "warning-90"


def test_reminders_wait_for_business_hours_unless_urgent(app: App) -> None:
    # both 75% warnings fall due at 17:00 sharp, both deadlines are the next morning
    with time_machine.travel(et(2026, 11, 30, 15, 30), tick=False):
        routine = send_case(app)
    with time_machine.travel(et(2026, 11, 30, 16, 15), tick=False):
        urgent = send_case(app, FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
    assert routine.sla_next_due_at == urgent.sla_next_due_at == et(2026, 11, 30, 17, 0)
    with time_machine.travel(et(2026, 11, 30, 17, 10), tick=False):  # after closing time
        assert fire_due(app) == 1
    with app.sessions() as session:
        given = [(e.case_id, e.once) for e in session.execute(select(SlaEvent).where(
            SlaEvent.once.is_not(None))).scalars()]
        assert given == [(urgent.id, "warning-75")]
        assert session.get(Case, routine.id).sla_next_due_at == et(2026, 12, 1, 9, 0)
    with time_machine.travel(et(2026, 12, 1, 9, 0), tick=False):  # the next opening
        assert fire_due(app) == 1
    assert len(sent(app, "sla_reminder")) == 2


def test_an_urgent_case_after_hours_pages_on_call_and_gives_emergency_advice(app: App) -> None:
    with time_machine.travel(et(2026, 11, 28, 22, 0), tick=False):  # Saturday night
        case = send_case(app, FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
    assert case.sla_deadline == et(2026, 11, 30, 10, 0)
    ack = text_of(sent(app, "ack")[0])
    assert "IF THE PATIENT CANNOT WAIT" in ack and "911" in ack
    pages = sent(app, "urgent_page")
    assert [str(m["To"]) for m in pages] == [DERMS[0]] and "URGENT" in str(pages[0]["Subject"])


def test_red_flags_suggest_urgent_and_the_providers_reply_makes_it_so(app: App) -> None:
    form = FULL_FORM.replace("Symptoms: itch, worse at night",
                             "Symptoms: a mole on the back that started to bleed")
    with time_machine.travel(et(2026, 11, 30, 9, 0), tick=False):
        case = send_case(app, form)
        ack = sent(app, "ack")[0]
        assert "POSSIBLY URGENT" in text_of(ack) and "pigmented lesion" in text_of(ack)
        assert "Possibly urgent" in text_of(sent(app, "derm_case")[0])
    with time_machine.travel(et(2026, 11, 30, 9, 20), tick=False):
        reply(app, ack, PROVIDER, "Urgency: urgent")
    with app.sessions() as session:
        case = session.get(Case, case.id)
        assert case.urgency == "urgent" and case.sla_deadline == et(2026, 11, 30, 10, 0)


def test_a_calendar_change_recomputes_open_deadlines_with_an_audit_entry(app: App) -> None:
    with time_machine.travel(et(2026, 11, 27, 16, 30), tick=False):
        case = send_case(app)
    assert case.sla_deadline == et(2026, 11, 30, 10, 30)
    calendar = app.config.schedules_dir / "calendar.toml"
    calendar.write_text(calendar.read_text() + '\n[[closure]]\ndate = "2026-11-30"\n'
                        'name = "Staff training"\n')
    reopened = App.open(app.config)
    try:
        with time_machine.travel(et(2026, 11, 28, 12, 0), tick=False):
            assert recompute_open(reopened) == 1
            assert recompute_open(reopened) == 0
        with reopened.sessions() as session:
            assert session.get(Case, case.id).sla_deadline == et(2026, 12, 1, 10, 30)
            entry = session.execute(select(AuditEvent).where(
                AuditEvent.action == "sla.recomputed")).scalar_one()
            assert datetime.fromisoformat(entry.detail["new_deadline"]) == et(2026, 12, 1, 10, 30)
    finally:
        reopened.close()


def test_the_sla_report_counts_met_and_breached_cases(app: App) -> None:
    for start, answered in [(et(2026, 11, 30, 9, 0), et(2026, 11, 30, 10, 0)),
                            (et(2026, 11, 30, 9, 10), et(2026, 11, 30, 12, 0))]:
        with time_machine.travel(start, tick=False):
            send_case(app)
        with time_machine.travel(answered, tick=False):
            fire_due(app)
            reply(app, sent(app, "derm_case")[-1], DERMS[0], ANSWER)
    report = cli_json(app.config, "sla", "report")
    assert report["overall"]["cases"] == 2 and report["overall"]["met_percent"] == 50
    assert report["overall"]["breaches"] == 1
    assert len(sent(app, "sla_reminder")) == 0  # the late one's reminders were moot: skipped
    assert report["by_dermatologist"][DERMS[0]]["p50_minutes"] == pytest.approx(115)
    assert list(report["by_week"]) == ["2026-11-30"]
    human = run_cli(app.config, "sla", "report").stdout
    assert "50%" in human and DERMS[0] in human


@pytest.mark.parametrize("received, raised, deadline", [
    # received Saturday: the clock has not run yet; it starts Monday 9:00 on the urgent target
    (et(2026, 11, 28, 10, 0), et(2026, 11, 28, 12, 0), et(2026, 11, 30, 10, 0)),
    # received Friday 16:30: 30 minutes used before closing, 30 left on Monday
    (et(2026, 11, 27, 16, 30), et(2026, 11, 28, 12, 0), et(2026, 11, 30, 9, 30)),
])
def test_urgency_raised_outside_hours_keeps_the_minutes_used(
    app: App, received: datetime, raised: datetime, deadline: datetime
) -> None:
    with time_machine.travel(received, tick=False):
        case = send_case(app)
    with time_machine.travel(raised, tick=False):
        reply(app, sent(app, "ack")[0], PROVIDER, "Urgency: urgent")
    with app.sessions() as session:
        case = session.get(Case, case.id)
        assert case.urgency == "urgent" and case.sla_deadline == deadline
    assert "IF THE PATIENT CANNOT WAIT" in text_of(sent(app, "urgency_changed")[0])
