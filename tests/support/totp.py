"""The authenticator (TOTP) step as an admin's browser goes through it."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, utcnow
from tests.support.web import csrf_of

KEY = re.compile(r'<code class="totp-key">([A-Z2-7 ]+)</code>')
ENROL = re.compile(r'name="enrol" value="([^"]+)"')


def code_at(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(utcnow() + timedelta(seconds=30 * steps_ahead))


def enrol(client: TestClient) -> str:
    """Set up the authenticator through the account page; the secret, as the app has it."""
    page = client.get("/account")
    assert page.status_code == 200 and "Turn it on" in page.text
    assert "<svg" in page.text  # the QR code, drawn inline
    secret = KEY.search(page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    enrol_token = ENROL.search(page.text).group(1)  # type: ignore[union-attr]
    done = client.post("/account/totp", data={"csrf_token": csrf_of(page.text),
                                              "enrol": enrol_token, "code": code_at(secret)},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"
    return secret


def second_step(client: TestClient, code: str):  # type: ignore[no-untyped-def]
    page = client.get("/login/code")
    assert page.status_code == 200 and "Authenticator code" in page.text
    return client.post("/login/code", data={"code": code, "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)


def actions(app: App, name: str) -> list[dict[str, object]]:
    """The detail of every audit event named `name`."""
    with app.sessions() as session:
        return [e.detail for e in session.execute(
            select(AuditEvent).where(AuditEvent.action == name)).scalars()]
