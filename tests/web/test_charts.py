"""The charts page: real reviewed cases become bars with their numbers; admins only."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import OutboundMessage
from mailflow.sla.enforcer import fire_due
from tests.e2e.test_review import ANSWER
from tests.support.mail import case_email
from tests.web.conftest import deliver, send_case

ET = ZoneInfo("America/New_York")


def answer_latest(app: App, derm: str) -> None:
    import email
    from email.policy import default as default_policy

    with app.sessions() as session:
        rows = session.execute(select(OutboundMessage).where(
            OutboundMessage.kind == "derm_case", OutboundMessage.to_addr == derm
        ).order_by(OutboundMessage.id.desc())).scalars().all()
    note = email.message_from_bytes(app.blobs.get(rows[0].blob_sha), policy=default_policy)
    address = note["Reply-To"].addresses[0].addr_spec
    deliver(app, case_email(derm, address, ANSWER, headers={
        "In-Reply-To": note["Message-ID"]}).as_bytes(), derm, address)


def test_charts_show_compliance_turnaround_volume_and_load(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    derm = people["derm"]
    monday = datetime(2026, 11, 30, tzinfo=ET)
    with time_machine.travel(monday.replace(hour=9), tick=False):
        send_case(app, people["provider"])  # -> derm one
    with time_machine.travel(monday.replace(hour=10), tick=False):
        answer_latest(app, derm)  # 60 minutes: met
    with time_machine.travel(monday.replace(hour=10, minute=5), tick=False):
        send_case(app, people["provider"])  # the least loaded: derm one again
    with time_machine.travel(monday.replace(hour=13), tick=False):
        fire_due(app)
        answer_latest(app, derm)  # 175 minutes: missed
    with time_machine.travel(monday.replace(hour=14), tick=False):
        send_case(app, people["provider"])  # stays open
        page = web(people["admin"]).get("/charts")
    assert page.status_code == 200
    text = page.text
    assert text.count("<svg") == 6
    assert "50% of 2" in text  # the day's and the week's compliance
    assert "175 min" in text  # p90 turnaround, over the 120 minute target
    assert "#c0392b" in text  # drawn as a warning
    assert "Dr Derm" in text  # the load chart names the dermatologists
    for who in ("derm", "provider"):
        assert web(people[who]).get("/charts").status_code == 403
