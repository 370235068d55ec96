"""A right password is remembered for [signin] remember_minutes (a mail client signs in for each
message it sends, and argon2 costs ~0.2 s of CPU and 64 MiB each time), without remembering
anything a wrong or changed password could pass: both are checked in full every time."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import time_machine
from fastapi.testclient import TestClient

from mailflow.app import App
from mailflow.db.models import utcnow
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from mailflow.workflow.registration import set_password_link
from tests.conftest import PASSWORD, RunningService
from tests.e2e.test_smtp_lockout import auth
from tests.support.web import csrf_of

NEW_PASSWORD = "a brand new passphrase"


def test_a_wrong_or_changed_password_is_never_let_through_by_a_remembered_one(
    service: RunningService, app: App, provider: str,
) -> None:
    assert auth(service.port, provider, PASSWORD) == 235
    assert auth(service.port, provider, PASSWORD + "x") == 535  # right a moment ago, still
    assert auth(service.port, provider, PASSWORD) == 235

    # the provider sets a new password from a "forgot password" link
    with app.sessions() as session:
        account = accounts.find(session, provider)
        assert account is not None
        path = urlparse(set_password_link(app, account)).path
    with TestClient(create_web_app(app)) as browser:
        form = browser.get(path)
        done = browser.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                        "csrf_token": csrf_of(form.text)})
        assert done.status_code in (200, 303), done.text

    assert auth(service.port, provider, PASSWORD) == 535  # remembered before, refused now
    assert auth(service.port, provider, NEW_PASSWORD) == 235
    with time_machine.travel(utcnow() + timedelta(minutes=app.config.signin.remember_minutes
                                                  + 1)):
        assert auth(service.port, provider, NEW_PASSWORD) == 235  # checked in full again
        assert auth(service.port, provider, PASSWORD) == 535
