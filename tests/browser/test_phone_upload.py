"""Issue #14 item 3, done when: in Chromium at a phone's size (375 x 812), a provider opens the
acknowledgement's link, gives the password, takes three photos (one upload cut off half-way
and resumed), sends them, and sees the case become complete; the case is complete in the
database and the acknowledgement saying so reaches the provider through the relay. And the
portal's "Start a new case" opens a complete case from the same page. Screenshots go to
test-artifacts/screenshots/ (phone-*.png)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Case
from mailflow.spool import Arrival, spool
from tests.browser.conftest import Browser, site_config
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email
from tests.support.sink import RelaySink

pytestmark = pytest.mark.xdist_group("browser")

PHONE = {"width": 375, "height": 812}
PIECE = 64 * 1024
FIELDS = ("distribution", "close-up", "oblique")


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    return site_config(tmp_path, db_url, sink,
                       uploads={"chunk_bytes": PIECE})  # a photo goes up in several pieces


def phone(browser: Callable[[], Browser]) -> Browser:
    b = browser()
    b.page.set_viewport_size(PHONE)
    b.prefix += "phone-"
    return b


def photo(seed: int) -> dict[str, Any]:
    return {"name": f"IMG_{seed:04d}.jpg", "mimeType": "image/jpeg",
            "buffer": skin_photo(seed=seed)}


def take_three(b: Browser) -> None:
    for seed, field in enumerate(FIELDS, start=11):
        b.page.set_input_files(f"input[type=file][data-field={field}]", photo(seed))
    expect(b.page.locator("[data-note]")).to_have_text(
        "3 photos are ready. Tap the button to send.", timeout=30_000)


def test_three_photos_from_the_link_complete_the_case_on_a_phone(
        app: App, site: RunningService, browser: Callable[[], Browser],
        people: dict[str, str], sink: RelaySink) -> None:
    provider = people["provider"]
    spool(app, Arrival("smtp", case_email(provider, CASES, FULL_FORM).as_bytes(),
                       mail_from=provider, rcpt_to=(CASES,), auth_user=provider))
    ack = sink.wait_for(provider)[0]
    link = re.search(r"http://\S+(/photos/\S+)", ack.text)
    assert link is not None and "more needed" in str(ack.message["Subject"])

    b = phone(browser)
    page = b.page
    cut: list[str] = []  # the pieces whose connection dropped
    asked: list[str] = []  # "how much did you keep?"

    def flaky(route: Any) -> None:
        request = route.request
        if request.method == "GET":
            asked.append(request.url)
        if request.method == "PUT" and request.headers.get("upload-offset") == str(PIECE) \
                and not cut:
            cut.append(request.url)
            route.abort("connectionreset")
            return
        route.continue_()

    page.route(re.compile(r".*/uploads/[0-9a-f]+$"), flaky)
    page.goto(urlsplit(link.group(0)).path)
    expect(page.locator("h1")).to_have_text(re.compile(r"Add photos to case DERM-"))
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("That password did not work")
    b.shot("09-photos-password")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text(re.compile(r"Photos for case DERM-"))
    expect(page.locator("input[type=file][accept='image/*'][capture]")).to_have_count(4)
    b.shot("10-photos-empty")
    take_three(b)
    assert len(cut) == 1 and any(url == cut[0] for url in asked)  # resumed after asking
    expect(page.locator(".files li[data-state=done]")).to_have_count(3)
    shot = b.shot("11-photos-ready")
    page.click("button:has-text('Send photos')")
    expect(page.locator("h1")).to_have_text(re.compile(r"Case DERM-\d{4}-\d{6} is complete"),
                                            timeout=30_000)
    b.shot("12-photos-sent")

    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.missing == [] and case.state in ("submitted", "assigned")
        assert len(case.images) == 3
    done = sink.wait_for(provider, count=2)[-1]
    assert "is now complete" in done.text
    assert b.errors == [] and b.failed == [(400, urlsplit(link.group(0)).path)]
    assert shot.exists()


def test_start_a_new_case_in_the_portal_on_a_phone(
        app: App, site: RunningService, browser: Callable[[], Browser],
        people: dict[str, str], sink: RelaySink) -> None:
    b = phone(browser)
    page = b.page
    b.sign_in(people["provider"], PASSWORD)
    page.click("text=Start a new case")
    expect(page.locator("h1")).to_have_text("Start a new case")
    page.fill("input[name=patient_name]", "Jordan Sample")
    page.fill("input[name=date_of_birth]", "1971-04-09")
    page.select_option("select[name=sex]", "female")
    page.fill("textarea[name=question]", "Itchy scaly patch, eczema or psoriasis?")
    page.fill("input[name=location]", "left forearm")
    page.fill("input[name=duration]", "3 months")
    page.select_option("select[name=consent]", "yes")
    take_three(b)
    b.shot("20-new-case")
    page.click("button:has-text('Send the case')")
    expect(page.locator("h1")).to_have_text(re.compile(r"Case DERM-\d{4}-\d{6} is complete"),
                                            timeout=30_000)
    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.state in ("submitted", "assigned") and len(case.images) == 3
        assert case.form["location"] == "left forearm"
    ack = sink.wait_for(people["provider"])[0]
    assert "It is ready for review" in ack.text
    assert b.errors == [] and b.failed == []
