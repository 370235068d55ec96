"""Issue #5 item 7, the email side: registering by email, approval, the set-password link."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus, utcnow
from mailflow.trust import tokens
from mailflow.workflow import accounts
from tests.conftest import RunningService
from tests.support.cli import cli_json
from tests.support.db import accepted_id, outbox, wait_final
from tests.support.mail import case_email, submit
from tests.support.registration import FORM, REGISTER
from tests.support.sink import RelaySink


def register(service: RunningService, app: App, body: str, sender: str = "robin@lakeside.test"):  # type: ignore[no-untyped-def]
    code, text = submit(service.port, None, None, case_email(sender, REGISTER, body))
    assert code == 250, text
    return wait_final(app, accepted_id(text))


def test_register_by_email_then_approval_sends_the_welcome_with_a_one_time_link(
    service: RunningService, app: App, sink: RelaySink, config: Config
) -> None:
    row = register(service, app, FORM)
    assert row.status == MessageStatus.PROCESSED and row.route == "registration"
    pending = cli_json(config, "users", "list")
    assert [(u["email"], u["status"], u["role"], u["license_state"]) for u in pending] == [
        ("robin@lakeside.test", "pending", "provider", "NJ")]
    assert outbox(app) == []  # nothing is sent to an unverified address

    cli_json(config, "users", "approve", "robin@lakeside.test")
    welcome = sink.wait_for("robin@lakeside.test")[0]
    assert "approved" in str(welcome.message["Subject"])
    text = welcome.text
    assert "Patient name (required):" in text and "911" in text
    assert "A photo of the whole area" in text
    link = re.search(r"http://\S+/set-password/(\S+)", text)
    assert link is not None
    token = link.group(1)
    with app.sessions() as session:
        account = accounts.find(session, "robin@lakeside.test")
        assert account is not None
        tokens.verify(app.keys.token_key, token, account.id, account.password_hash, utcnow())
        assert tokens.account_of(token) == account.id
        with time_machine.travel(utcnow() + timedelta(hours=73)), \
                pytest.raises(tokens.TokenError, match="expired"):
            tokens.verify(app.keys.token_key, token, account.id, account.password_hash,
                          utcnow())
        # once the password is set, the same link no longer works
        new_hash = accounts.hash_password("a brand new password")
        with pytest.raises(tokens.TokenError, match="already used"):
            tokens.verify(app.keys.token_key, token, account.id, new_hash, utcnow())


@pytest.mark.parametrize("body, words", [
    (FORM.replace("1234567893", "1234567890"), "NPI"),
    (FORM.replace("License state: NJ", "License state: Narnia"), "License state"),
    ("Name: Dr Someone\n", "Practice is missing"),
])
def test_an_unusable_registration_is_held_with_the_reason(
    service: RunningService, app: App, body: str, words: str
) -> None:
    row = register(service, app, body)
    assert row.status == MessageStatus.QUARANTINED
    assert row.reason_code == "registration-incomplete" and words in row.outcome
    assert [m.kind for m in outbox(app)] == ["registration_form"]  # the form, to fill in


def test_an_unreadable_registration_is_answered_with_the_form_once_a_day(
    service: RunningService, app: App, sink: RelaySink
) -> None:
    stranger = "someone@newclinic.test"
    rows = [register(service, app, text, stranger) for text in (
        "Hello, I would like to join your service.", "Hello again: may I join, please?")]
    assert [r.status for r in rows] == [MessageStatus.QUARANTINED] * 2
    assert "sent the form" in rows[0].outcome and "sent the form" not in rows[1].outcome
    answer = sink.wait_for(stranger)[0]
    assert "Name:" in answer.text and "NPI:" in answer.text and "/register" in answer.text
    assert str(answer.message["Reply-To"]) == REGISTER
    assert [m.kind for m in outbox(app)] == ["registration_form"]  # once, not twice


def test_a_second_registration_for_an_account_is_held(
    service: RunningService, app: App, provider: str
) -> None:
    row = register(service, app, FORM, sender=provider)
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "already-registered"


def test_without_signing_in_only_register_takes_mail(service: RunningService) -> None:
    code, text = submit(service.port, None, None,
                        case_email("x@y.test", "cases@derm.localhost", "hello"))
    assert code == 530 and b"register@derm.localhost" in text
