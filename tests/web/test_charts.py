"""The charts page: real reviewed cases become bars with their numbers; admins only."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Account, OutboundMessage
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow.enforcer import fire_due
from tests.support.cases import deliver, send_case
from tests.support.mail import case_email
from tests.support.review import ANSWER
from tests.support.web import sign_in

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
    assert "164 min" in text  # p90 of 60 and 175 (interpolated, as `sla report`): over 120
    assert "#c0392b" in text  # drawn as a warning
    assert "Dr Derm" in text  # the load chart names the dermatologists
    for who in ("derm", "provider"):
        assert web(people[who]).get("/charts").status_code == 403


def bar(text: str, title: str) -> re.Match[str]:
    """The <rect> of the bar whose tooltip is `title`."""
    found = re.search(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" '
                      r'fill="([^"]+)"><title>' + re.escape(title) + "</title>", text)
    assert found, f"no bar {title!r}"
    return found


def test_a_zero_is_drawn_and_targets_come_from_the_sla_policies(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    sla_toml = app.config.schedules_dir / "sla.toml"
    sla_toml.write_text(sla_toml.read_text()
                        .replace("met_target_percent = 95", "met_target_percent = 90")
                        .replace("target_minutes = 120", "target_minutes = 100", 1))
    derm = people["derm"]
    saturday = datetime(2026, 11, 28, tzinfo=ET)
    with time_machine.travel(saturday.replace(hour=10), tick=False):
        send_case(app, people["provider"])
    with time_machine.travel(saturday.replace(hour=11), tick=False):
        answer_latest(app, derm)  # before the clock starts on Monday: 0 minutes, met
    monday = datetime(2026, 11, 30, tzinfo=ET)
    with time_machine.travel(monday.replace(hour=9), tick=False):
        send_case(app, people["provider"])
    with time_machine.travel(monday.replace(hour=12), tick=False):
        fire_due(app)
        answer_latest(app, derm)  # 180 minutes: missed, the day is 0% met
        send_case(app, people["provider"])  # two stay open, one for each dermatologist:
        send_case(app, people["provider"])  # two bars share the load chart's width
    with transaction(app.sessions) as session:
        account = session.execute(select(Account).where(Account.email == derm)).scalar_one()
        account.name = "Dr Maximiliana Wolfeschlegelsteinhausen-Bergerdorff"
    fresh = App.open(app.config)  # reads the changed sla.toml
    try:
        with time_machine.travel(monday.replace(hour=14), tick=False):
            page = TestClient(create_web_app(fresh))
            with page:
                assert sign_in(page, people["admin"]).status_code == 303
                text = page.get("/charts").text
    finally:
        fresh.close()
    zero_day = bar(text, "30 Nov: 0% of 1")
    assert float(zero_day.group(1)) >= 3 and zero_day.group(2) == "#c0392b"
    zero_minutes = bar(text, "23 Nov: 0 min")  # the Saturday case counts in p50 and p90
    assert float(zero_minutes.group(1)) >= 3
    assert text.count("<title>23 Nov: 0 min</title>") == 2
    assert "target 90%" in text and "target 100 min" in text
    assert "(90% met)" in text and "(100 business minutes)" in text
    assert "nothing measured" not in text.split("SLA met, by day")[1].split("</section>")[0]
    full = "Dr Maximiliana Wolfeschlegelsteinhausen-Bergerdorff"
    assert f"<title>{full}</title>Dr Maximiliana Wolfe" in text  # cut to fit its bar,
    assert f"</title>{full}</text>" not in text  # named in full in the tooltip
    assert "<title>Dr Derm Two</title>Dr Derm Two</text>" in text  # a short one whole
