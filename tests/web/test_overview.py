"""The SLA overview: time left in business minutes, on track / at risk / breached, sorting,
counts, today's met % (time-machine: the clock is exact, nothing sleeps)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from fastapi.testclient import TestClient

from mailflow.app import App
from mailflow.db.session import transaction
from mailflow.web import views
from tests.support.cases import send_case
from tests.support.mail import FULL_FORM

ET = ZoneInfo("America/New_York")
ROW = re.compile(r'<tr class="sla-([a-z-]+)"[^>]*>\s*<td><a href="/cases/(DERM-\d{4}-\d{6})">')


def rows(html: str) -> list[tuple[str, str]]:
    return [(number, sla) for sla, number in ROW.findall(html)]


def test_time_left_colours_and_sorting(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        routine = send_case(app, people["provider"])
    with time_machine.travel(datetime(2026, 11, 30, 10, 0, tzinfo=ET), tick=False):
        urgent = send_case(app, people["provider"],
                           FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
    with time_machine.travel(datetime(2026, 11, 30, 10, 40, tzinfo=ET), tick=False):
        admin = web(people["admin"])
        data = {c["number"]: c for c in admin.get("/api/cases").json()["cases"]}
        assert data[routine]["minutes_left"] == 20 and data[routine]["sla"] == "at-risk"
        assert data[urgent]["minutes_left"] == 20 and data[urgent]["sla"] == "on-track"
        page = admin.get("/")
        assert "20 min" in page.text
    with time_machine.travel(datetime(2026, 11, 30, 11, 30, tzinfo=ET), tick=False):
        admin = web(people["admin"])
        body = admin.get("/api/cases").json()
        data = {c["number"]: c for c in body["cases"]}
        assert data[routine]["minutes_left"] == -30 and data[routine]["sla"] == "breached"
        assert data[urgent]["minutes_left"] == -30 and data[urgent]["sla"] == "breached"
        assert body["counts"]["assigned"] == 2 and body["total"] == 2
        page = admin.get("/").text
        assert "−30 min" in page and 'class="pill pill-breached"' in page
        assert rows(admin.get("/?sort=number&dir=desc").text) == [
            (urgent, "breached"), (routine, "breached")]
        assert rows(admin.get("/?sort=number&dir=asc").text) == [
            (routine, "breached"), (urgent, "breached")]
        assert [r[0] for r in rows(admin.get("/?sort=nonsense").text)] == [routine, urgent]


def test_met_today_counts_the_clocks_stopped_today(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        first = send_case(app, people["provider"])
        second = send_case(app, people["provider"])
    with time_machine.travel(datetime(2026, 11, 30, 12, 0, tzinfo=ET), tick=False):
        with transaction(app.sessions) as session:  # one met, one missed: set as stopped
            for number, met in ((first, True), (second, False)):
                case = views.find_case(session, number)
                assert case is not None
                case.sla_stopped_at, case.sla_met = datetime.now(ET), met
        admin = web(people["admin"])
        assert admin.get("/api/cases").json()["met_today"] == {
            "met": 1, "measured": 2, "percent": 50.0}
        assert "50.0%" in admin.get("/").text
