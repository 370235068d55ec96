"""The IMAP door (DESIGN §2) against a real Dovecot on 127.0.0.1: a case left in a mailbox
becomes a case and leaves the inbox, IDLE brings new mail at once, a crash between spool and
move makes one case, an IMAP re-fetch makes one case, the real-mail corpus all gets outcomes."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailflow.app import App, initialise
from mailflow.config import Config, ConfigError, load_config
from mailflow.db.models import Case, InboundMessage, MessageStatus
from mailflow.intake.imap import ImapIntake
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import run_cli
from tests.support.corpus import as_provider, corpus_messages
from tests.support.dovecot import Dovecot
from tests.support.mail import FULL_FORM, case_email, wait_until
from tests.support.sink import RelaySink

MAILBOX_USER = "cases"
MAILBOX_PASSWORD = "mailbox password 2026"
AUTHSERV = "mx.derm.test"


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path / "dovecot")
    server.add_user(MAILBOX_USER, MAILBOX_PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink, dovecot: Dovecot) -> Config:
    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        imap={"enabled": True, "host": dovecot.host, "port": dovecot.port,
              "security": "starttls", "ca_file": str(dovecot.cafile),
              "username": MAILBOX_USER, "password": MAILBOX_PASSWORD,
              "processed_mailbox": "Processed", "rejected_mailbox": "TooLarge",
              "reconnect_seconds": [0.2], "idle_seconds": 600, "poll_seconds": 600},
        # the mail server that holds the mailbox checked DKIM on the way in
        trust={"trusted_relays": [dovecot.host], "authserv_id": AUTHSERV},
    )
    initialise(cfg)
    return cfg


def delivered(raw: bytes, to: str = CASES, sender: str = "dr.family@clinic.test") -> bytes:
    """The message as the organisation's mail server filed it: its delivery headers on top."""
    domain = sender.rpartition("@")[2]
    return (f"Return-Path: <{sender}>\r\nDelivered-To: {to}\r\n"
            f"Authentication-Results: {AUTHSERV}; dkim=pass header.d={domain}\r\n"
            f"Received: from mail.{domain} by {AUTHSERV}; Mon, 2 Nov 2026 10:00 -0500\r\n"
            ).encode() + raw


def a_case(provider: str, duration: str = "3 months") -> bytes:
    msg: EmailMessage = case_email(provider, CASES, FULL_FORM.replace("3 months", duration),
                                   three_photos())
    return delivered(msg.as_bytes(), sender=provider)


def count(app: App, model: type) -> int:
    with app.sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def imap_service(app: App, process_pool: AnalysisPool) -> Iterator[RunningService]:
    running = RunningService(app, process_pool, ("imap", "worker", "outbox")).start()
    assert running.service is not None and running.service.imap is not None
    wait_until(running.service.imap.connected.is_set, 15, "the IMAP door to connect")
    yield running
    running.stop()


def inbox_empty(dovecot: Dovecot) -> bool:
    return dovecot.list_uids(MAILBOX_USER, MAILBOX_PASSWORD, "INBOX") == []


def test_a_case_in_the_mailbox_becomes_a_case_and_moves_to_processed(
    dovecot: Dovecot, app: App, process_pool: AnalysisPool, sink: RelaySink, provider: str,
) -> None:
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, a_case(provider))  # waiting before we start
    running = RunningService(app, process_pool, ("imap", "worker", "outbox")).start()
    try:
        ack = sink.wait_for(provider, timeout=60)[0]
        assert "received" in str(ack.message["Subject"])
        wait_until(lambda: inbox_empty(dovecot), 15, "the inbox to be emptied")
        assert len(dovecot.list_uids(MAILBOX_USER, MAILBOX_PASSWORD, "Processed")) == 1
        with app.sessions() as session:
            row = session.execute(select(InboundMessage)).scalar_one()
            assert (row.source, row.status, row.route) == ("imap", MessageStatus.PROCESSED,
                                                           "new-case")
            assert row.rcpt_to == [CASES] and row.peer == dovecot.host
            assert row.source_ref and ";UID=" in row.source_ref
        assert count(app, Case) == 1
    finally:
        running.stop()


def test_new_mail_arrives_by_idle_not_by_polling(
    imap_service: RunningService, dovecot: Dovecot, app: App, sink: RelaySink, provider: str,
) -> None:
    # poll_seconds is 600 here: only IDLE can bring this in within the wait below
    door = imap_service.service.imap  # type: ignore[union-attr]
    wait_until(door.idling.is_set, 15, "the door to wait in IDLE")
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, a_case(provider))
    sink.wait_for(provider, timeout=30)
    wait_until(lambda: inbox_empty(dovecot), 10, "the inbox to be emptied")


class LosesConnectionAfterSpooling(ImapIntake):
    """The door as a crash leaves it: the message is spooled, then the move never happens."""

    def _move(self, client, uid, mailbox):  # type: ignore[no-untyped-def]
        raise ConnectionResetError("the connection dropped before the move")


def test_a_crash_between_spool_and_move_makes_one_case(
    dovecot: Dovecot, app: App, process_pool: AnalysisPool, sink: RelaySink, provider: str,
) -> None:
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, a_case(provider))
    crashing = LosesConnectionAfterSpooling(app)
    stop = threading.Event()
    thread = threading.Thread(target=crashing.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: crashing.spooled >= 1, 15, "the message to be spooled")
    stop.set()
    thread.join(15)
    assert count(app, InboundMessage) == 1
    assert not inbox_empty(dovecot)  # still on the server: the move never happened

    running = RunningService(app, process_pool, ("imap", "worker", "outbox")).start()
    try:
        wait_until(lambda: inbox_empty(dovecot), 15, "the leftover to be moved")
        sink.wait_for(provider, timeout=60)
        assert running.service is not None and running.service.imap.spooled == 0
        assert count(app, InboundMessage) == 1 and count(app, Case) == 1
        assert len(sink.to(provider)) == 1  # one acknowledgement
    finally:
        running.stop()


def test_the_same_message_filed_twice_makes_one_case(
    imap_service: RunningService, dovecot: Dovecot, app: App, sink: RelaySink, provider: str,
) -> None:
    raw = a_case(provider)
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, raw)
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, raw)  # a new UID: a re-fetch, a re-filing
    wait_until(lambda: count(app, InboundMessage) == 2 and inbox_empty(dovecot), 30,
               "both copies to be taken")
    wait_until(lambda: all(r.status in (MessageStatus.PROCESSED, MessageStatus.DUPLICATE)
                           for r in rows(app)), 30, "both to reach an outcome")
    assert count(app, Case) == 1
    assert sorted(r.status for r in rows(app)) == sorted([MessageStatus.PROCESSED,
                                                          MessageStatus.DUPLICATE])


def test_a_forged_pass_in_the_mail_servers_results_opens_no_case(
    imap_service: RunningService, dovecot: Dovecot, app: App, provider: str,
) -> None:
    """Issue #11 through the IMAP door: the sender's MAIL FROM, copied into the mail server's
    Authentication-Results as a quoted value, is a value, not a DKIM result."""
    forged = a_case(provider).replace(
        f"{AUTHSERV}; dkim=pass header.d=clinic.test".encode(),
        f'{AUTHSERV}; spf=pass smtp.mailfrom="dkim=pass header.d=clinic.test x"@evil.test; '
        "dmarc=fail header.from=clinic.test".encode())
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, forged)
    wait_until(lambda: [r.status for r in rows(app)] == [MessageStatus.QUARANTINED], 30,
               "the forged message to be held")
    assert rows(app)[0].reason_code == "unverified"
    assert "did not report DKIM or DMARC pass for clinic.test" in rows(app)[0].outcome
    assert count(app, Case) == 0


def rows(app: App) -> list[InboundMessage]:
    with app.sessions() as session:
        return list(session.execute(select(InboundMessage).order_by(InboundMessage.id)).scalars())


def test_a_message_over_the_size_limit_is_left_for_a_person(
    dovecot: Dovecot, tmp_path: Path, db_url: str, sink: RelaySink, config: Config,
    process_pool: AnalysisPool, provider: str,
) -> None:
    small = load_config(config.base_dir / "config.toml",
                        environ={"MAILFLOW_SMTP__MAX_MESSAGE_BYTES": "200000"})
    app = App.open(small)
    try:
        running = RunningService(app, process_pool, ("imap", "worker")).start()
        try:
            assert running.service is not None and running.service.imap is not None
            # as the other IDLE tests do: the mail arrives while the door waits in IDLE (an
            # append between its first look and its IDLE was missed until the 600 s poll)
            wait_until(running.service.imap.idling.is_set, 30, "the door to wait in IDLE")
            dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, a_case(provider))  # ~1.5 MB
            wait_until(lambda: inbox_empty(dovecot), 30, "the inbox to be emptied")
            assert len(dovecot.list_uids(MAILBOX_USER, MAILBOX_PASSWORD, "TooLarge")) == 1
            assert count(app, InboundMessage) == 0
        finally:
            running.stop()
    finally:
        app.close()


def test_a_wrong_password_is_retried_and_the_mail_waits(
    dovecot: Dovecot, app: App, config: Config, process_pool: AnalysisPool, sink: RelaySink,
    provider: str, caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = load_config(config.base_dir / "config.toml",
                        environ={"MAILFLOW_IMAP__PASSWORD": "not the password"})
    door = ImapIntake(dataclasses.replace(app, config=wrong))
    stop = threading.Event()
    thread = threading.Thread(target=door.run, args=(stop,), daemon=True)
    dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD, a_case(provider))
    with caplog.at_level("WARNING", logger="mailflow.intake.imap"):
        thread.start()
        wait_until(lambda: sum("trying again" in r.message for r in caplog.records) >= 2, 15,
                   "two failed attempts")
        stop.set()
        thread.join(15)
    assert MAILBOX_PASSWORD not in caplog.text and not door.connected.is_set()
    assert count(app, InboundMessage) == 0 and not inbox_empty(dovecot)




def test_every_real_message_in_the_mailbox_ends_in_one_outcome(
    imap_service: RunningService, dovecot: Dovecot, app: App, provider: str,
) -> None:
    messages = corpus_messages()
    for path in messages:
        dovecot.append(MAILBOX_USER, MAILBOX_PASSWORD,
                       delivered(as_provider(path.read_bytes(), provider), sender=provider))
    wait_until(lambda: count(app, InboundMessage) == len(messages) and inbox_empty(dovecot),
               120, "every message to be taken from the mailbox")
    final = (MessageStatus.PROCESSED, MessageStatus.QUARANTINED, MessageStatus.DUPLICATE)
    wait_until(lambda: all(r.status in final for r in rows(app)), 180,
               "every message to reach an outcome")
    assert all(r.outcome for r in rows(app))


def test_the_configuration_refuses_what_cannot_work(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[imap]\nenabled = true\nhost = "mail.example.org"\nusername = "cases"\n')
    with pytest.raises(ConfigError, match="password is not set"):
        load_config(path, environ={})
    path.write_text('[imap]\nenabled = true\nhost = "mail.example.org"\nusername = "cases"\n'
                    'password = "x"\nsecurity = "none"\n')
    with pytest.raises(ConfigError, match="only to a loopback address"):
        load_config(path, environ={})


def test_the_imap_part_says_when_it_is_off(app: App, tmp_path: Path, db_url: str,
                                            sink: RelaySink) -> None:
    cfg = make_config(tmp_path / "off", db_url)
    initialise(cfg)
    done = run_cli(cfg, "imap", check=False)
    assert done.returncode == 2 and "[imap] enabled = true" in done.stderr
