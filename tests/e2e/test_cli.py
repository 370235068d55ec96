"""The command line as an admin and scripts use it."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from mailflow.db.session import transaction
from mailflow.trust import passwords
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import accepted_id, case_count, wait_final
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink


def test_users_add_list_approve(config: Config, app: App) -> None:
    # as its own process: the password from standard input, the exit codes, the usage errors
    run_cli(config, "users", "add", "--role", "provider", "--email", "New.Doc@Clinic.test",
            "--name", "Dr New", "--license-state", "ny", "--password-stdin",
            input="a long enough password\n", process=True)
    listed = cli_json(config, "users", "list")
    assert [(u["email"], u["status"], u["has_password"], u["license_state"]) for u in listed] == [
        ("new.doc@clinic.test", "pending", True, "NY")]
    approved = cli_json(config, "users", "approve", "new.doc@clinic.test")
    assert approved[0]["status"] == "approved"
    with app.sessions() as session:
        account = accounts.find(session, "new.doc@clinic.test")
        assert account is not None and passwords.check_password(account, "a long enough password")
        assert account.password_hash and "a long enough password" not in account.password_hash


def test_users_add_refuses_bad_input_with_a_message(config: Config) -> None:
    for args, words in [
        (("--role", "provider", "--email", "not-an-address", "--name", "X"), "not an email"),
        (("--role", "provider", "--email", "a@b.test", "--name", "X", "--password-stdin"),
         "at least 10"),
    ]:
        result = run_cli(config, "users", "add", *args, input="short\n", check=False,
                         process=True)
        assert result.returncode == 1 and words in result.stderr
    run_cli(config, "users", "add", "--role", "admin", "--email", "a@b.test", "--name", "A")
    again = run_cli(config, "users", "add", "--role", "admin", "--email", "A@b.test",
                    "--name", "A", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad_role = run_cli(config, "users", "add", "--role", "wizard", "--email", "w@b.test",
                       "--name", "W", check=False, process=True)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr


def test_a_wrong_config_key_or_value_stops_start_up_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    for content, env, words in [
        ("[smtp]\nprot = 25\n", {}, "smtp.prot"),
        ("[smtp]\nport = 'many'\n", {}, "smtp.port"),
        ("", {"MAILFLOW_SMTP__PORT": "99999"}, "smtp.port"),
        ("", {"MAILFLOW_NOSUCH__KEY": "1"}, "MAILFLOW_NOSUCH__KEY"),
        ("[smtp\n", {}, "not valid TOML"),
    ]:
        cfg.write_text(content)
        result = subprocess.run([sys.executable, "-m", "mailflow", "--config", str(cfg), "init"],
                                capture_output=True, text=True, env={"PATH": "/usr/bin", **env})
        assert result.returncode == 2, result.stderr
        assert words in result.stderr


def test_audit_verify_names_the_first_broken_link(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config
) -> None:
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos()))
    sink.wait_for(provider)
    report = cli_json(config, "audit", "verify")
    assert report["ok"] and report["events"] >= 5
    with transaction(app.sessions) as session:
        victim, actor = session.execute(
            text("select id, actor from audit_events where action = 'case.submitted'")).one()
        session.execute(text("update audit_events set actor = 'mallory' where id = :i"),
                        {"i": victim})
    result = run_cli(config, "audit", "verify", check=False)
    assert result.returncode == 1
    assert f"BROKEN at event {victim}" in result.stdout and "altered" in result.stdout
    with transaction(app.sessions) as session:
        session.execute(text("update audit_events set actor = :a where id = :i"),
                        {"i": victim, "a": actor})
        session.execute(text("delete from audit_events where id = :i"), {"i": victim + 1})
    result = run_cli(config, "audit", "verify", check=False)
    assert result.returncode == 1 and f"BROKEN at event {victim + 2}" in result.stdout


def test_a_quarantined_message_is_reprocessed_once_its_sender_is_approved(
    service: RunningService, app: App, sink: RelaySink, config: Config
) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email="late@clinic.test", name="Dr Late", role="provider",
                     password=PASSWORD, approved=True)
    msg = case_email("late@clinic.test", CASES, FULL_FORM, three_photos())
    code, reply = submit(service.port, "late@clinic.test", PASSWORD, msg)
    first = wait_final(app, accepted_id(reply))
    assert first.route == "new-case"
    with transaction(app.sessions) as session:  # the account is suspended ...
        session.execute(text("update accounts set status = 'pending'"))
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:  # ... so cannot sign in
        submit(service.port, "late@clinic.test", PASSWORD, msg)
    assert refused.value.smtp_code == 535
    # mail that reached us before the suspension is held until the account is approved again
    from mailflow.spool import Arrival, spool

    msg.replace_header("Subject", "Second case")
    message_id = spool(app, Arrival("smtp", msg.as_bytes(), mail_from="late@clinic.test",
                                    rcpt_to=(CASES,), auth_user="late@clinic.test"))
    held = wait_final(app, message_id)
    assert held.status == MessageStatus.QUARANTINED and held.reason_code == "not-approved"
    assert case_count(app) == 1

    cli_json(config, "users", "approve", "late@clinic.test")
    out = run_cli(config, "messages", "reprocess", str(message_id)).stdout
    assert "queued for processing again" in out
    done = wait_final(app, message_id)
    assert done.status == MessageStatus.PROCESSED and done.route == "new-case"
    assert case_count(app) == 2
    delivered = sink.wait_for("late@clinic.test", count=3)
    subjects = sorted(str(m.message["Subject"]) for m in delivered)
    assert [s for s in subjects if "received" in s] == [
        "Case DERM-2026-000001 received", "Case DERM-2026-000002 received"]
    assert "Your mailflow account is approved" in subjects  # approval says so
    again = run_cli(config, "messages", "reprocess", "999999", check=False)
    assert again.returncode == 1 and "no message 999999" in again.stderr


def test_cases_list_and_show_for_scripts(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config
) -> None:
    assert run_cli(config, "cases", "list").stdout.strip() == "no cases"
    code, text_ = submit(service.port, provider, PASSWORD,
                         case_email(provider, CASES, FULL_FORM, three_photos()[:1]))
    wait_final(app, accepted_id(text_))
    listed = cli_json(config, "cases", "list", "--state", "incomplete")
    assert len(listed) == 1 and listed[0]["photos"] == 1
    number = listed[0]["number"]
    shown = cli_json(config, "cases", "show", number)
    assert shown["missing"] == ["view:close-up (anterior/posterior)",
                                "view:close-up (oblique/lateral)"]
    assert shown["patient"]["name"] == "Jane Testpatient"
    assert shown["outbox"][0]["kind"] == "ack_incomplete"
    human = run_cli(config, "cases", "show", number).stdout
    assert number in human and "Jane Testpatient" in human
    missing = run_cli(config, "cases", "show", "DERM-1999-000001", check=False)
    assert missing.returncode == 1 and "no case" in missing.stderr
    with app.sessions() as session:
        views = session.execute(
            text("select count(*) from audit_events where action = 'case.viewed'")).scalar_one()
    assert views == 2  # each PHI read through the CLI is audited


def test_auth_login_works_and_a_wrong_password_is_535(
    service: RunningService, provider: str
) -> None:
    from tests.support.mail import client_context

    with smtplib.SMTP("127.0.0.1", service.port, timeout=30) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        smtp.user, smtp.password = provider, PASSWORD
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
    with smtplib.SMTP("127.0.0.1", service.port, timeout=30) as smtp:
        smtp.starttls(context=client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            smtp.login(provider, "not the password")
        assert wrong.value.smtp_code == 535
    with smtplib.SMTP("127.0.0.1", service.port, timeout=30) as smtp:  # no AUTH before TLS
        smtp.ehlo()
        code, _ = smtp.docmd("AUTH", "PLAIN")
        assert code == 538


def test_password_guessing_is_locked_out(service: RunningService, provider: str) -> None:
    """Five failures lock the login from that address (the lockout's other rules:
    tests/e2e/test_smtp_lockout.py)."""
    from tests.support.mail import client_context

    def login(password: str) -> int:
        with smtplib.SMTP("127.0.0.1", service.port, timeout=30) as smtp:
            smtp.starttls(context=client_context())
            smtp.ehlo()
            try:
                return smtp.login(provider, password)[0]
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code

    assert [login(f"guess number {i}") for i in range(5)] == [535] * 5
    assert login(PASSWORD) == 535  # even the right password, from here, for a while
