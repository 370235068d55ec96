"""Sign-in: success, a generic error, the lockout kept in the database, sign-out, cookies
(the lockout's own rules: tests/web/test_lockout.py)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import timedelta

import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.access_models import SigninCounter, WebSession
from mailflow.db.models import AuditEvent, utcnow
from mailflow.db.session import transaction
from mailflow.web.security import SESSION_COOKIE, secret_key_path
from mailflow.workflow import accounts
from tests.conftest import PASSWORD
from tests.support.web import csrf_of, sign_in

GENERIC = "That email and password did not sign you in."


def test_an_admin_signs_in_and_lands_on_the_overview(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = sign_in(client, people["admin"].upper())  # emails are not case-sensitive
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # not configured behind TLS in the tests
    page = client.get("/")
    assert page.status_code == 200 and "SLA overview" in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["cache-control"] == "no-store"
    path = secret_key_path(app.config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_password_and_unknown_email_give_the_same_generic_error(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    wrong = sign_in(client, people["admin"], "not the password")
    unknown = sign_in(client, "nobody@nowhere.test", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 400 and GENERIC in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_five_failures_lock_the_login_from_that_address_even_for_the_right_password(
    app: App, config: Config, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    for _ in range(config.signin.attempts):
        assert sign_in(client, people["provider"], "guess guess guess").status_code == 400
    with app.sessions() as session:
        pair = session.execute(select(SigninCounter).filter_by(kind="pair")).scalar_one()
        assert pair.failures == config.signin.attempts and pair.locked_until is not None
    locked = sign_in(web(None), people["provider"], PASSWORD)  # a new browser, same address
    assert locked.status_code == 400 and GENERIC in locked.text
    later = utcnow() + timedelta(minutes=config.signin.lock_minutes, seconds=1)
    with time_machine.travel(later, tick=False):  # the lock runs out
        assert sign_in(web(None), people["provider"], PASSWORD).status_code == 303
    with app.sessions() as session:
        pair = session.execute(select(SigninCounter).filter_by(kind="pair")).scalar_one()
        assert pair.failures == 0 and pair.locked_until is None
        actions = session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("web.%")).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["web.login_failed"] * 5 + ["web.login_locked", "web.login"]


def test_a_pending_account_cannot_sign_in(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email="new@clinic.test", name="Dr New", role="provider",
                     password=PASSWORD)
    response = sign_in(web(None), "new@clinic.test")
    assert response.status_code == 400 and GENERIC in response.text


def test_sign_out_ends_the_session_on_the_server(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(people["admin"])
    cookie = client.cookies[SESSION_COOKIE]
    token = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    with app.sessions() as session:
        assert session.execute(select(WebSession)).scalars().all() == []
    replay = web(None)
    replay.cookies.set(SESSION_COOKIE, cookie)  # the old cookie, still correctly signed
    assert replay.get("/api/cases").status_code == 401


def test_a_forged_session_cookie_is_not_accepted(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    client.cookies.set(SESSION_COOKIE, '{"a": 1, "n": "x"}.forged.signature')
    assert client.get("/api/cases").status_code == 401


def test_the_sign_in_form_needs_its_csrf_token(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    client.get("/login")
    response = client.post("/login", data={"email": people["admin"], "password": PASSWORD})
    assert response.status_code == 403
    forged = client.post("/login", data={"email": people["admin"], "password": PASSWORD,
                                         "csrf_token": "0" * 64})
    assert forged.status_code == 403


def test_after_sign_in_only_a_local_page_is_opened(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    client = web(None)
    redirect = client.get("/outbox", follow_redirects=False).headers["location"]
    assert redirect == "/login?next=%2Foutbox"
    for target, expected in (("/outbox", "/outbox"), ("//evil.test/x", "/"),
                             ("https://evil.test/", "/")):
        page = client.get("/login", params={"next": target})
        response = client.post("/login", data={
            "email": people["admin"], "password": PASSWORD, "csrf_token": csrf_of(page.text),
            "next": target}, follow_redirects=False)
        assert response.headers["location"] == expected
        client.cookies.clear()


def test_behind_tls_the_cookies_are_secure(
    app: App, people: dict[str, str],
) -> None:
    import dataclasses

    from mailflow.web.app import create_web_app

    web_config = app.config.web.model_copy(update={"secure_cookies": True})
    secure_app = dataclasses.replace(app, config=app.config.model_copy(update={"web": web_config}))
    with TestClient(create_web_app(secure_app), base_url="https://testserver") as client:
        page = client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        response = sign_in(client, people["admin"])
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def test_the_openapi_document_describes_the_api_only(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    paths = set(web(None).get("/api/openapi.json").json()["paths"])
    assert paths == {"/api/cases", "/api/cases/{number}", "/api/cases/{number}/fhir",
                     "/api/quarantine", "/api/outbox"}
