"""Issue #9 item 6, the admin side: `mailflow users resend-link | reject | approve` as
subprocesses, and the same on the registrations page."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Account, AuditEvent, utcnow
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow import accounts
from tests.support.cli import cli_json, run_cli
from tests.support.db import outbox
from tests.support.registration import NEW, registered, welcome_link
from tests.support.sink import RelaySink
from tests.support.web import csrf_of, sign_in


def test_approving_twice_says_so_and_sends_nothing_more(app: App, config: Config) -> None:
    registered(app)
    first = run_cli(config, "users", "approve", NEW)
    assert "already" not in first.stdout + first.stderr
    again = run_cli(config, "users", "approve", NEW)
    assert again.returncode == 0 and f"{NEW} was already approved" in again.stderr
    assert cli_json(config, "users", "approve", NEW)[0]["already_approved"] is True
    assert [m.kind for m in outbox(app)] == ["registration_confirmed"]


def test_reject_keeps_the_reason_and_emails_nobody(app: App, config: Config) -> None:
    registered(app)
    rows = cli_json(config, "users", "reject", NEW, "--reason", "NPI belongs to someone else")
    assert rows[0]["status"] == "rejected"
    with app.sessions() as session:
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "account.rejected")).scalar_one()
        assert event.actor == "cli" and event.detail["reason"] == "NPI belongs to someone else"
    assert outbox(app) == []
    twice = run_cli(config, "users", "reject", NEW, "--reason", "again", check=False)
    assert twice.returncode == 1 and "is rejected, not pending" in twice.stderr
    assert run_cli(config, "users", "reject", "nobody@x.test", "--reason", "x",
                   check=False).returncode == 1


def test_resend_link_sends_a_fresh_link_once_the_first_has_expired(
    app: App, config: Config, sink: RelaySink, people, web  # type: ignore[no-untyped-def]
) -> None:
    registered(app)
    run_cli(config, "users", "approve", NEW)
    old = welcome_link(app)
    with time_machine.travel(utcnow() + timedelta(hours=73)):
        assert web(None).get(old).status_code == 410
    printed = run_cli(config, "users", "resend-link", NEW)
    assert "a new link" in printed.stdout
    deliver_due(app)
    mail = [m for m in sink.wait_for(NEW, 2) if "new link" in str(m.message["Subject"])][0]
    assert "72 hours" in mail.text
    link = re.search(r"http://[^/\s]+(/set-password/\S+)", mail.text).group(1)  # type: ignore[union-attr]
    browser = web(None)
    form = browser.get(link)
    assert form.status_code == 200
    browser.post(link, data={"password": "a long new password", "confirm":
                             "a long new password", "csrf_token": csrf_of(form.text)})
    assert sign_in(web(None), NEW, "a long new password").status_code == 303
    refused = run_cli(config, "users", "resend-link", NEW, check=False)
    assert refused.returncode == 1 and "has set a password already" in refused.stderr
    assert run_cli(config, "users", "resend-link", people["admin"].upper(),
                   check=False).returncode == 1


def test_the_registrations_page_approves_once_rejects_with_a_reason_and_resends(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    account_id = registered(app)
    admin = web(people["admin"])
    page = admin.get("/registrations")
    token = csrf_of(page.text)
    admin.post(f"/registrations/{account_id}/approve", data={"csrf_token": token})
    again = admin.post(f"/registrations/{account_id}/approve", data={"csrf_token": token})
    assert again.status_code == 200 and "was already approved" in again.text
    assert "Approved, password not set yet" in again.text and NEW in again.text
    resent = admin.post(f"/registrations/{account_id}/resend-link", data={"csrf_token": token})
    assert "A new link to set the password has been emailed" in resent.text
    assert [m.kind for m in outbox(app)] == ["registration_confirmed", "password_link"]
    with app.sessions() as session:
        other = accounts.add(session, email="pending@x.test", name="Dr P", role="provider")
        session.commit()
        other_id = other.id
    no = admin.post(f"/registrations/{other_id}/reject",
                    data={"csrf_token": token, "reason": "a test registration"})
    assert "is rejected" in no.text
    with app.sessions() as session:
        assert session.get(Account, other_id).status == "rejected"  # type: ignore[union-attr]
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "account.rejected")).scalar_one()
        assert event.detail["reason"] == "a test registration"
