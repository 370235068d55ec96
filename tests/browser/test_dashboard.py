"""Issue #5, done when: the dashboard in headless Chromium, against the running service.

Each test drives the real doors: cases and registrations arrive over SMTP, emails leave
through the relay sink, and the browser only clicks what an admin would click.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from mailflow.app import App
from mailflow.config import Config
from tests.browser.conftest import Browser
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.db import accepted_id, wait_final
from tests.support.mail import FULL_FORM, case_email, reply_to, submit
from tests.support.registration import FORM as REGISTRATION_FORM
from tests.support.registration import REGISTER
from tests.support.review import ANSWER
from tests.support.sink import RelaySink

# every browser test on one xdist worker: two Chromiums at once starve the rest of the suite
pytestmark = pytest.mark.xdist_group("browser")

CASE_ROW = "table.cases tbody tr[data-key^='DERM-']"
XSS = """<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">"""
# The behaviour: the case appears on the open page without a reload. How fast (issue #5: within
# 2 s on a quiet machine) is a figure for benchmarks/, not a wall-clock limit in a test on a
# shared machine; this bound only says it came by the live update, not the minute's refresh.
LIVE_WITHIN_SECONDS = 30.0


def live(page: object) -> None:
    """Wait until the page's event stream is open and the broker hears it."""
    expect(page.locator("#live-status[data-state=live]")).to_be_visible(timeout=15_000)  # type: ignore[attr-defined]


def test_a_case_emailed_in_appears_live_and_opens_with_timeline_and_photos(
    site: RunningService, browser: Callable[[], Browser], people: dict[str, str],
    sink: RelaySink,
) -> None:
    admin = browser()
    admin.page.goto("/")
    expect(admin.page.locator("h1")).to_have_text("Sign in")
    admin.shot("01-sign-in")
    admin.sign_in(people["admin"], PASSWORD)
    page = admin.page
    expect(page.locator("h1")).to_have_text("SLA overview")
    expect(page.locator("p.empty")).to_have_text("No open cases.")
    live(page)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    provider = people["provider"]
    code, _ = submit(site.port, provider, PASSWORD,
                     case_email(provider, CASES, FULL_FORM, three_photos()))
    assert code == 250
    row = page.locator(CASE_ROW)
    expect(row).to_have_count(1, timeout=int(LIVE_WITHIN_SECONDS * 1000))
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    expect(row).to_contain_text("Dr Derm")  # assigned straight away (the roster is on duty)
    expect(row.locator(".pill")).to_have_text("on track")
    expect(page.locator(".tile.met")).to_be_visible()
    admin.shot("02-overview-live")

    number = row.get_attribute("data-key")
    assert number and re.fullmatch(r"DERM-\d{4}-\d{6}", number)
    row.locator("a").click()
    page.wait_for_url(f"**/cases/{number}")
    expect(page.locator("h1")).to_contain_text(number)
    timeline = page.locator("ol.timeline li")
    expect(timeline.first).to_be_visible()
    assert timeline.count() >= 3  # the message in, the acknowledgement and notification out
    expect(page.locator("ol.timeline")).to_contain_text("Email out: ack")
    photos = page.locator(".photos img")
    expect(photos).to_have_count(3)
    for i in range(3):
        expect(photos.nth(i)).to_have_js_property("complete", True)
        assert photos.nth(i).evaluate("img => img.naturalWidth") > 0  # the thumbnail loaded
    expect(page.locator(".photos figcaption").first).to_contain_text("distribution")
    expect(page.locator("table.audit")).to_contain_text("case.assigned")
    expect(page.locator(".sla-card")).to_contain_text("Deadline")
    admin.shot("03-case")

    # The dermatologist answers by email: the open case page shows the consult without reload.
    page.evaluate("window.__sameDocument = true")
    live(page)
    derm = next(d for d in (people["derm"], people["derm2"]) if sink.to(d))
    notification = sink.wait_for(derm)[0]
    msg, address = reply_to(notification, derm, ANSWER)
    code, text = submit(site.port, derm, PASSWORD, msg, derm, [address])
    assert code == 250, text
    expect(page.locator("#live-consult")).to_contain_text("Nummular eczema", timeout=15_000)
    expect(page.locator("#live-head .state")).to_have_text("reviewed")
    expect(page.locator("#live-consult a.button")).to_have_text("Consult report (PDF)",
                                                               timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    admin.shot("04-case-reviewed")
    assert admin.errors == [] and admin.failed == []  # no script error, CSP violation or 404


def test_an_admin_releases_a_held_message_and_the_case_goes_through(
    site: RunningService, app: App, browser: Callable[[], Browser], people: dict[str, str],
    sink: RelaySink,
) -> None:
    admin = browser()
    admin.sign_in(people["admin"], PASSWORD)
    page = admin.page
    page.click("nav >> text=Quarantine")
    expect(page.locator("h1")).to_have_text("Quarantine")
    live(page)

    # A registered provider's case from a client that did not sign in: held as unverified.
    provider = people["provider"]
    code, text = submit(site.port, None, None,
                        case_email(provider, CASES, FULL_FORM, three_photos()))
    assert code == 250
    held = wait_final(app, accepted_id(text))
    assert held.reason_code == "unverified" and sink.to(provider) == []
    row = page.locator(f"tr[data-key='{held.id}']")
    expect(row).to_contain_text("unverified")  # it arrived on the open page by itself
    expect(row).to_contain_text(provider)
    admin.shot("05-quarantine")

    row.locator("button", has_text="Release").click()
    expect(page.locator(".flash-ok")).to_be_visible()
    admin.shot("06-quarantine-released")
    ack = sink.wait_for(provider, timeout=30)[0]
    assert "received" in str(ack.message["Subject"])
    expect(page.locator(f"tr[data-key='{held.id}']")).to_have_count(0)
    page.click("nav >> text=SLA overview")
    expect(page.locator(CASE_ROW)).to_have_count(1)
    assert admin.errors == [] and admin.failed == []


def test_an_admin_approves_a_registration_and_the_provider_sets_a_password(
    site: RunningService, config: Config, browser: Callable[[], Browser], people: dict[str, str],
    sink: RelaySink,
) -> None:
    admin = browser()
    admin.sign_in(people["admin"], PASSWORD)
    page = admin.page
    page.click("nav >> text=Registrations")
    expect(page.locator("h1")).to_have_text("Registrations")
    live(page)

    newcomer = "robin@lakeside.test"
    code, _ = submit(site.port, None, None, case_email(newcomer, REGISTER, REGISTRATION_FORM))
    assert code == 250
    row = page.locator("table tbody tr", has_text=newcomer)
    expect(row).to_contain_text("Lakeside Family Medicine")
    expect(row).to_contain_text("1234567893")
    admin.shot("07-registrations")
    row.locator("button", has_text="Approve").click()
    expect(page.locator(".flash-ok")).to_contain_text(f"{newcomer} is approved")

    welcome = sink.wait_for(newcomer, timeout=30)[0]
    assert "approved" in str(welcome.message["Subject"])
    link = re.search(r"http://\S+/set-password/\S+", welcome.text)
    assert link is not None, welcome.text
    assert link.group(0).startswith(config.web_url + "/")  # the configured public address
    path = urlsplit(link.group(0)).path  # ... which here is served on this test's own port

    newbie = browser()
    newbie.page.goto(path)
    expect(newbie.page.locator("h1")).to_contain_text("password")
    newbie.shot("08-set-password")
    new_password = "lakeside clinic 2026 secret"
    newbie.page.fill("input[name=password]", new_password)
    newbie.page.fill("input[name=confirm]", new_password)
    newbie.page.click("button[type=submit]")
    newbie.page.wait_for_url(re.compile(r"/login"))
    expect(newbie.page.locator(".flash-ok")).to_contain_text("Your password is set")
    newbie.sign_in(newcomer, new_password)
    expect(newbie.page.locator("h1")).to_have_text("My cases")
    newbie.shot("09-provider-home")
    newbie.page.goto(path)  # the link is spent
    expect(newbie.page.locator("body")).to_contain_text("already used")
    assert admin.errors == [] and newbie.errors == [] and admin.failed == []
    assert newbie.failed == [(404, path)]  # the spent link only


def test_every_page_renders_for_its_role_without_errors(
    site: RunningService, app: App, config: Config, browser: Callable[[], Browser],
    people: dict[str, str], sink: RelaySink,
) -> None:
    provider = people["provider"]
    code, text = submit(site.port, provider, PASSWORD,
                        case_email(provider, CASES, FULL_FORM, three_photos()))
    assert code == 250
    wait_final(app, accepted_id(text))
    sink.refuse_with = "550 5.1.1 no such user"  # the next email out dies at the relay
    code, text = submit(site.port, provider, PASSWORD, case_email(  # markup typed into a field
        provider, CASES, FULL_FORM.replace("3 months", "5 months " + XSS), three_photos()))
    assert code == 250
    wait_final(app, accepted_id(text))

    admin = browser()
    admin.sign_in(people["admin"], PASSWORD)
    page = admin.page
    page.click("nav >> text=Outbox")
    expect(page.locator("tr.out-dead").first).to_be_visible(timeout=30_000)
    expect(page.locator("tr.out-dead").first).to_contain_text("550")
    admin.shot("10-outbox")
    sink.refuse_with = ""
    page.locator("tr.out-dead").first.locator("button", has_text="Retry").click()
    expect(page.locator(".flash-ok")).to_be_visible()

    page.click("a.who")  # the account page: set up the authenticator step
    expect(page.locator("h1")).to_have_text("Your account")
    expect(page.locator(".qr svg")).to_be_visible()
    expect(page.locator("code.totp-key")).to_have_text(re.compile(r"^[A-Z2-7]{4}( [A-Z2-7]{4})+$"))
    admin.shot("15-account-authenticator")

    page.click("nav >> text=Charts")
    expect(page.locator("h1")).to_have_text("Charts")
    charts = page.locator("svg")
    assert charts.count() >= 4
    admin.shot("11-charts")

    derm = browser()
    derm.sign_in(people["derm"], PASSWORD)
    expect(derm.page.locator("h1")).to_have_text("My queue")
    derm.shot("12-dermatologist-queue")
    derm.page.goto("/quarantine")
    expect(derm.page.locator("body")).to_contain_text("for administrators")
    derm.shot("13-forbidden")

    doctor = browser()
    doctor.sign_in(provider, PASSWORD)
    cases = doctor.page.locator("#live-provider-home table tbody tr")  # not Your patients
    expect(cases).to_have_count(2)
    expect(doctor.page.locator("#your-patients article.patient")).not_to_have_count(0)
    cases.locator("a").first.click()  # the newest: the one with markup
    expect(doctor.page.locator(".photos img")).to_have_count(3)
    expect(doctor.page.locator("dl.fields").nth(1)).to_contain_text(XSS)  # shown as typed
    assert doctor.page.evaluate("document.title") != "pwned"
    assert doctor.page.locator("dl.fields img, dl.fields script").count() == 0
    expect(doctor.page.locator("table.audit")).to_have_count(0)  # not for providers
    doctor.shot("14-provider-case")
    assert admin.errors == [] and derm.errors == [] and doctor.errors == []
    assert admin.failed == [] and doctor.failed == [] and derm.failed == [(403, "/quarantine")]
