"""Issue #9 item 6: registering on the web, and "forgot password", through the real app.

The sign-up makes the same pending account as register@ (one code path); each refusal (bad
NPI, a missing field, the honeypot, a too-fast post, no CSRF token, the rate limits) says why
and makes nothing. "Forgot password" mails a one-time link to a known, approved account (read
back at the relay sink), and gives an unknown address the same page and no mail.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, utcnow
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow import accounts
from tests.conftest import PASSWORD
from tests.support.db import outbox
from tests.support.sink import RelaySink
from tests.support.web import csrf_of, sign_in

NEW = "casey@harbourclinic.test"
GOOD = {"name": "Dr Casey Harbour", "credentials": "MD", "practice": "Harbour Clinic",
        "npi": "1234567893", "license_state": "ME", "phone": "555-0199", "email": NEW}
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def post_signup(client: TestClient, fields: dict[str, str], seconds_later: float = 5,
                csrf: bool = True, honeypot: str = "") -> Response:
    """Open the form, then send it back `seconds_later` (time moved, not waited: the form is
    opened that long ago)."""
    with time_machine.travel(utcnow() - timedelta(seconds=seconds_later)):
        page = client.get("/register")
    assert page.status_code == 200
    data = {**fields, "form_token": FORM_TOKEN.search(page.text).group(1),  # type: ignore[union-attr]
            "website": honeypot}
    if csrf:
        data["csrf_token"] = csrf_of(page.text)
    return client.post("/register", data=data, follow_redirects=False)


def account_status(app: App, email: str) -> str | None:
    with app.sessions() as session:
        account = accounts.find(session, email)
        return None if account is None else account.status


def test_signing_up_on_the_web_makes_a_pending_registration(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    anonymous = web(None)
    login = anonymous.get("/login").text
    assert 'href="/register"' in login and 'href="/forgot-password"' in login
    sent = post_signup(anonymous, GOOD)
    assert sent.status_code == 303 and sent.headers["location"] == "/register/done"
    assert "Thank you for registering" in anonymous.get("/register/done").text
    assert account_status(app, NEW) == "pending"
    page = web(people["admin"]).get("/registrations")
    assert "Harbour Clinic" in page.text and "1234567893" in page.text and NEW in page.text
    with app.sessions() as session:
        created = session.execute(select(AuditEvent).where(
            AuditEvent.action == "account.created")).scalars().all()
        assert created[-1].actor.startswith("web:")
    assert outbox(app) == []  # nothing goes to an address nobody has verified


@pytest.mark.parametrize("change, seconds, message", [
    ({"npi": "1234567890"}, 5, "is not a valid 10-digit NPI"),
    ({"practice": ""}, 5, "Practice is missing"),
    ({"email": ""}, 5, "Email is missing"),
    ({"license_state": "XX"}, 5, "is not a US state code"),
    ({"name": "N" * 300}, 5, "Name is too long"),
    ({}, 0.5, "quicker than a person"),
])
def test_a_bad_or_hurried_sign_up_is_refused_with_the_reason(
    app: App, web, change: dict[str, str], seconds: float, message: str  # type: ignore[no-untyped-def]
) -> None:
    answer = post_signup(web(None), {**GOOD, **change}, seconds_later=seconds)
    assert answer.status_code == 400 and message in answer.text
    assert 'value="Harbour Clinic"' in answer.text or "practice" in change  # kept to fix
    assert account_status(app, NEW) is None


def test_a_form_left_open_too_long_has_expired(app: App, web) -> None:  # type: ignore[no-untyped-def]
    answer = post_signup(web(None), GOOD, seconds_later=2 * 3600)
    assert answer.status_code == 403 and "The form has expired" in answer.text
    assert account_status(app, NEW) is None


def test_the_honeypot_a_missing_csrf_token_and_a_forged_form_token_are_refused(
    app: App, web  # type: ignore[no-untyped-def]
) -> None:
    client = web(None)
    trap = post_signup(client, GOOD, honeypot="http://spam.example")
    assert trap.status_code == 400 and "fill in only the fields you can see" in trap.text
    no_csrf = post_signup(client, GOOD, csrf=False)
    assert no_csrf.status_code == 403 and "The form has expired" in no_csrf.text
    page = client.get("/register")
    forged = client.post("/register", data={**GOOD, "csrf_token": csrf_of(page.text),
                                            "form_token": "e30.forged.token"})
    assert forged.status_code == 400 and "fill in only the fields you can see" in forged.text
    # a token shown to another browser does not work in this one
    other = web(None).get("/register")
    moved = client.post("/register", data={
        **GOOD, "csrf_token": csrf_of(forged.text),
        "form_token": FORM_TOKEN.search(other.text).group(1)})  # type: ignore[union-attr]
    assert moved.status_code == 400 and "fill in only the fields you can see" in moved.text
    assert account_status(app, NEW) is None


def test_sign_ups_are_rate_limited_per_address_and_per_client(app: App, web) -> None:  # type: ignore[no-untyped-def]
    client = web(None)
    bad_npi = {**GOOD, "npi": "1234567890"}
    for _ in range(3):  # per_address_per_hour = 3 (config.toml's default)
        assert post_signup(client, bad_npi).status_code == 400
    limited = post_signup(client, GOOD)
    assert limited.status_code == 429 and "too many requests" in limited.text
    assert account_status(app, NEW) is None
    for i in range(7):  # per_ip_per_hour = 10: three above, seven more
        assert post_signup(client, {**bad_npi, "email": f"n{i}@x.test"}).status_code == 400
    other = post_signup(client, {**GOOD, "email": "fresh@x.test"})
    assert other.status_code == 429 and account_status(app, "fresh@x.test") is None
    with time_machine.travel(utcnow() + timedelta(minutes=61)):  # an hour on: allowed again
        assert post_signup(client, GOOD).status_code == 303
    assert account_status(app, NEW) == "pending"


def test_signing_up_with_a_known_address_changes_nothing_and_says_the_same(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    known = post_signup(web(None), {**GOOD, "email": people["provider"].upper()})
    assert known.status_code == 303 and known.headers["location"] == "/register/done"
    assert account_status(app, people["provider"]) == "approved"
    with app.sessions() as session:
        assert len(accounts.list_accounts(session)) == 5  # no new account


def forgot(client: TestClient, email: str) -> Response:
    page = client.get("/forgot-password")
    return client.post("/forgot-password", data={"email": email,
                                                  "csrf_token": csrf_of(page.text)})


def test_forgot_password_mails_a_one_time_link_that_sets_a_new_password(
    app: App, people, web, sink: RelaySink  # type: ignore[no-untyped-def]
) -> None:
    provider = people["provider"]
    answer = forgot(web(None), provider)
    assert answer.status_code == 200 and "we have emailed it a" in answer.text
    deliver_due(app)
    mail = sink.wait_for(provider)[0]
    assert "Set a new password" in str(mail.message["Subject"]) and "60 minutes" in mail.text
    link = re.search(r"http://[^/\s]+(/set-password/\S+)", mail.text).group(1)  # type: ignore[union-attr]
    browser = web(None)
    with time_machine.travel(utcnow() + timedelta(minutes=61)):
        assert browser.get(link).status_code == 410  # an hour: expired
    form = browser.get(link)
    assert form.status_code == 200 and provider in form.text
    new = "a fresh long passphrase"
    done = browser.post(link, data={"password": new, "confirm": new,
                                    "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert sign_in(web(None), provider, new).status_code == 303
    assert sign_in(web(None), provider, PASSWORD).status_code == 400  # the old one is gone
    assert browser.get(link).status_code == 404  # spent


def test_forgot_password_for_an_unknown_or_pending_address_says_the_same_and_sends_nothing(
    app: App, people, web, sink: RelaySink  # type: ignore[no-untyped-def]
) -> None:
    assert post_signup(web(None), GOOD).status_code == 303  # a pending account
    known = forgot(web(None), people["provider"])
    texts = [forgot(web(None), who).text.replace(who, "ADDRESS")
             for who in ("nobody@nowhere.test", NEW)]
    assert texts[0] == texts[1] == known.text.replace(people["provider"], "ADDRESS")
    deliver_due(app)
    assert [m.to_addr for m in outbox(app)] == [people["provider"]]
    assert sink.to("nobody@nowhere.test") == [] and sink.to(NEW) == []


def test_forgot_password_is_rate_limited_the_same_for_every_address(app: App, web) -> None:  # type: ignore[no-untyped-def]
    client = web(None)
    for _ in range(3):
        assert forgot(client, "nobody@nowhere.test").status_code == 200
    limited = forgot(client, "nobody@nowhere.test")
    assert limited.status_code == 429 and "too many requests" in limited.text
