"""Issue #9 item 6, done when: in headless Chromium, a provider registers on the web, an admin
approves, the welcome email's link sets the password, the provider signs in and out, and
"forgot password" sets a new one. Screenshots of the new pages at 375 px and desktop width.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from mailflow.app import initialise
from mailflow.config import Config
from tests.browser.conftest import Browser
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.sink import RelaySink

pytestmark = pytest.mark.xdist_group("browser")

NEW = "morgan@pinecrest.test"
PHONE = (375, 812)


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    # Playwright fills a form in milliseconds; the minimum fill time has its own test (web)
    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000, "require_auth": False},
        registration={"min_fill_seconds": 0},
    )
    initialise(cfg)
    return cfg


def both_widths(b: Browser, name: str) -> None:
    """A screenshot at desktop width, then at a phone's, then back."""
    b.shot(name)
    b.page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
    b.shot(name + "-375")
    b.page.set_viewport_size({"width": 1360, "height": 900})


def link_in(sink: RelaySink, subject: str) -> str:
    mail = next(m for m in sink.wait_for(NEW, timeout=30) if subject in str(m.message["Subject"]))
    found = re.search(r"http://\S+/set-password/\S+", mail.text)
    assert found is not None, mail.text
    return urlsplit(found.group(0)).path


def set_password(b: Browser, path: str, password: str) -> None:
    b.page.goto(path)
    expect(b.page.locator("h1")).to_have_text("Set your password")
    b.page.fill("input[name=password]", password)
    b.page.fill("input[name=confirm]", password)
    b.page.click("button[type=submit]")
    b.page.wait_for_url(re.compile(r"/login"))
    expect(b.page.locator(".flash-ok")).to_contain_text("Your password is set")


def test_register_on_the_web_approve_set_password_sign_in_and_reset_it(
    site: RunningService, browser: Callable[[], Browser], people: dict[str, str],
    sink: RelaySink,
) -> None:
    newbie = browser()
    page = newbie.page
    page.goto("/login")
    both_widths(newbie, "20-sign-in-with-links")
    page.click("text=Register here")
    expect(page.locator("h1")).to_have_text("Register as a provider")
    both_widths(newbie, "21-register")
    page.fill("input[name=name]", "Dr Morgan Pine")
    page.fill("input[name=credentials]", "DO")
    page.fill("input[name=practice]", "Pinecrest Family Practice")
    page.fill("input[name=npi]", "1234567890")  # a wrong check digit first
    page.select_option("select[name=license_state]", "VT")
    page.fill("input[name=phone]", "555-0177")
    page.fill("input[name=email]", NEW)
    page.click("button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("is not a valid 10-digit NPI")
    both_widths(newbie, "22-register-error")
    expect(page.locator("input[name=practice]")).to_have_value("Pinecrest Family Practice")
    page.fill("input[name=npi]", "1234567893")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/register/done"))
    expect(page.locator("h1")).to_have_text("Thank you for registering")
    both_widths(newbie, "23-registered")

    admin = browser()
    admin.sign_in(people["admin"], PASSWORD)
    admin.page.click("nav >> text=Registrations")
    row = admin.page.locator("tr", has_text=NEW)
    expect(row).to_contain_text("Pinecrest Family Practice")
    admin.shot("24-registrations-web")
    row.locator("button", has_text="Approve").click()
    expect(admin.page.locator(".flash-ok")).to_contain_text(f"{NEW} is approved")
    expect(admin.page.locator("#waiting-password")).to_contain_text(NEW)
    both_widths(admin, "25-registrations-waiting")

    first = "pinecrest practice 2026"
    set_password(newbie, link_in(sink, "approved"), first)
    newbie.sign_in(NEW, first)
    expect(page.locator("h1")).to_have_text("My cases")
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/login"))

    page.click("text=Forgot your password?")
    expect(page.locator("h1")).to_have_text("Forgot your password?")
    both_widths(newbie, "26-forgot-password")
    page.fill("input[name=email]", NEW)
    page.click("button[type=submit]")
    expect(page.locator(".flash-ok")).to_contain_text(f"If {NEW} belongs to an approved account")
    both_widths(newbie, "27-forgot-password-sent")
    second = "a different passphrase 77"
    reset = link_in(sink, "Set a new password")
    set_password(newbie, reset, second)
    newbie.sign_in(NEW, second)
    expect(page.locator("h1")).to_have_text("My cases")
    page.goto(reset)  # spent
    expect(page.locator("body")).to_contain_text("already used")
    assert newbie.errors == [] and admin.errors == [] and admin.failed == []
    assert [status for status, _ in newbie.failed] == [400, 404]  # the bad NPI, the spent link
