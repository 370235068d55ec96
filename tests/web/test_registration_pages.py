"""Registrations on the web: approve/reject (admins only), and the one-time set-password link."""

from __future__ import annotations

from datetime import timedelta

import time_machine

from mailflow.app import App
from mailflow.db.models import Account, utcnow
from tests.support.registration import NEW, registered, welcome_link
from tests.support.web import csrf_of, sign_in


def test_an_admin_approves_and_the_provider_sets_a_password_once(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    account_id = registered(app)
    admin = web(people["admin"])
    page = admin.get("/registrations")
    assert page.status_code == 200 and "Lakeside Family Medicine" in page.text
    assert "1234567893" in page.text
    done = admin.post(f"/registrations/{account_id}/approve",
                      data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    link = welcome_link(app)

    browser = web(None)
    form = browser.get(link)
    assert form.status_code == 200 and NEW in form.text
    token = csrf_of(form.text)
    short = browser.post(link, data={"password": "short", "confirm": "short",
                                     "csrf_token": token})
    assert short.status_code == 400 and "at least 10" in short.text
    token = csrf_of(short.text)
    ok = browser.post(link, data={"password": "my new long password",
                                  "confirm": "my new long password", "csrf_token": token},
                      follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/login"
    assert sign_in(web(None), NEW, "my new long password").status_code == 303
    assert browser.get(link).status_code == 404  # used: the link no longer works


def test_an_expired_or_forged_link_and_a_missing_csrf_token_are_refused(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    account_id = registered(app)
    admin = web(people["admin"])
    admin.post(f"/registrations/{account_id}/approve",
               data={"csrf_token": csrf_of(admin.get("/registrations").text)})
    link = welcome_link(app)
    browser = web(None)
    assert browser.get(link[:-3] + "AAA").status_code == 404
    assert browser.post(link, data={"password": "x" * 12, "confirm": "x" * 12}).status_code == 403
    with time_machine.travel(utcnow() + timedelta(hours=73)):
        assert browser.get(link).status_code == 410


def test_only_admins_see_and_act_on_registrations(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    account_id = registered(app)
    for who in ("provider", "derm"):
        client = web(people[who])
        assert client.get("/registrations").status_code == 403
        page = client.get("/")
        assert client.post(f"/registrations/{account_id}/approve",
                           data={"csrf_token": csrf_of(page.text)}).status_code == 403
    assert web(None).get("/registrations", follow_redirects=False).status_code in (303, 307)
    admin = web(people["admin"])
    page = admin.get("/registrations")
    assert admin.post(f"/registrations/{account_id}/reject",
                      data={"csrf_token": csrf_of(page.text)},
                      follow_redirects=False).status_code == 303
    with app.sessions() as session:
        assert session.get(Account, account_id).status == "rejected"
