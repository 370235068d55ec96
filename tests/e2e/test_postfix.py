"""Issue #12 item 1: behind a real MTA. Debian's Postfix plays both parts a site gives it:

- the MX: it takes a provider's message for derm.localhost from the outside and hands it to
  mailflow's door (transport_maps -> smtp:[127.0.0.1]:door), telling the door with XFORWARD
  which client it came from; mailflow's MX mode checks DKIM/SPF/DMARC for that client;
- the relay: mailflow sends its mail to Postfix over STARTTLS, the certificate verified against
  the site's CA (relay_ca_file), and Postfix delivers it into Dovecot by LMTP, where the test
  reads it over IMAP and checks its DKIM signature with dkimpy against the printed record.

One Postfix, one Dovecot, one DNS server and one mailflow (its SMTP door in a thread; the worker
and the outbox run in the test: drain, deliver_due) serve the module's tests, per database; each
test looks only at its own messages. The settings here are the ones docs/deploy.md gives.
"""

from __future__ import annotations

import email
import shutil
import smtplib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import dkim
import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import Case, InboundMessage, MessageStatus, OutboxStatus, utcnow
from mailflow.db.session import transaction
from mailflow.outbound.delivery import deliver_due
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from mailflow.workflow.pool import AnalysisPool
from mailflow.workflow.worker import drain
from tests.conftest import (
    DATABASES,
    PASSWORD,
    MigratedTemplates,
    RunningService,
    _drop_pg_database,
    make_config,
)
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json
from tests.support.db import outbox
from tests.support.dkim_dns import dns_answering, printed_record
from tests.support.dns import TinyDns, signing_key, txt_strings
from tests.support.dovecot import Dovecot, free_port
from tests.support.mail import FULL_FORM, case_email, wait_until
from tests.support.postfix import Postfix, require_postfix
from tests.support.tls_ca import TestCA
from tests.support.web import sign_in

pytestmark = pytest.mark.xdist_group("postfix")  # one Postfix for the module, on one worker

PROVIDER = "dr.family@clinic.test"  # DKIM-signs; SPF names only the clinic's own servers
SPF_PROVIDER = "dr.spf@spf-clinic.test"  # no DKIM; SPF names 127.0.0.1 (the test's client)
ADMIN = "admin@derm.localhost"
MAILBOX_PASSWORD = "mailbox password 2026"
POSTFIX_ADDRESS = "127.0.0.2"  # Postfix connects to the door from here (smtp_bind_address)
FORGED = "no DKIM signature or SPF pass aligned with it, so From: may be forged"
HUGE = str(10**15)  # queue_minfree: more free space than any disk has


@dataclass
class Site:
    app: App
    config: Config
    postfix: Postfix
    dovecot: Dovecot
    door_port: int
    pool: AnalysisPool
    keys: dict[str, tuple[bytes, str]]
    tmp: Path  # config.toml and the acknowledgement as read over IMAP (for a person to check)
    service: RunningService | None = None

    def open_door(self) -> None:
        self.service = RunningService(self.app, self.pool, ("smtp",), self.door_port).start()

    def close_door(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


def postfix_settings() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """main.cf and the two smtpd listeners of master.cf: what docs/deploy.md shows."""
    main = {
        "myhostname": "mx.derm.localhost",
        "mynetworks": "127.0.0.0/8",  # mailflow's machine: it may send out through "relay"
        "relay_domains": "derm.localhost",  # the MX takes mail for mailflow's domain ...
        "smtpd_relay_restrictions": "reject_unauth_destination",  # ... and nothing else
        "smtpd_tls_security_level": "may",
        "smtpd_tls_loglevel": "1",  # "TLS connection established" in the log
        "smtp_tls_security_level": "may",  # to mailflow's door: STARTTLS when offered
        "smtp_send_xforward_command": "yes",  # the door hears which client Postfix had
        "smtp_bind_address": POSTFIX_ADDRESS,
        "disable_mime_output_conversion": "yes",  # never re-encode signed mail
        "unverified_recipient_reject_code": "550",  # the door said "no such mailbox"
        "address_verify_poll_delay": "1s",  # how soon smtpd looks for the door's answer
    }
    listeners = {
        # an address mailflow does not have is refused here, by asking the door (address
        # verification, cached), not bounced later to a sender who may be forged
        "mx": {"smtpd_recipient_restrictions": "reject_unverified_recipient"},
        # mailflow's outgoing mail: from mynetworks only, and only over TLS
        "relay": {"smtpd_tls_security_level": "encrypt",
                  "smtpd_relay_restrictions": "permit_mynetworks,reject"},
    }
    return main, listeners


@pytest.fixture(scope="module", params=DATABASES)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         migrated_templates: MigratedTemplates, process_pool: AnalysisPool) -> Iterator[Site]:
    require_postfix()
    tmp = tmp_path_factory.mktemp("postfix-site")
    pg_name = f"t_{uuid.uuid4().hex[:16]}"
    db_url = (migrated_templates.sqlite_copy(tmp / "mailflow.db") if request.param == "sqlite"
              else migrated_templates.postgres_copy(pg_name))
    keys = {"clinic.test": signing_key()}
    dns_server = TinyDns({
        ("sel1._domainkey.clinic.test", "TXT"): [txt_strings(keys["clinic.test"][1])],
        ("clinic.test", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 -all"'],
        ("_dmarc.clinic.test", "TXT"): ['"v=DMARC1; p=reject"'],
        ("spf-clinic.test", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
        ("_dmarc.spf-clinic.test", "TXT"): ['"v=DMARC1; p=quarantine"'],
    }).start()
    # Dovecot's LMTP delivers as the mail user, unchrooted: a folder that user can pass into
    mail_folder = Path(tempfile.mkdtemp(prefix="mailflow-dovecot-"))
    mail_folder.chmod(0o711)
    dovecot = Dovecot(mail_folder / "dovecot", lmtp=True)
    for user in (PROVIDER, SPF_PROVIDER):
        dovecot.add_user(user, MAILBOX_PASSWORD)
    dovecot.start()
    ca = TestCA()
    (tmp / "site-ca.pem").write_bytes(ca.cert_pem)
    door_port = free_port()
    main, listeners = postfix_settings()
    lmtp = f"lmtp:inet:127.0.0.1:{dovecot.lmtp_port}"  # the providers' mail servers, here
    postfix = Postfix(main, listeners, certificate=ca.issue("127.0.0.1", "localhost"),
                      transports={"derm.localhost": f"smtp:[127.0.0.1]:{door_port}",
                                  "clinic.test": lmtp, "spf-clinic.test": lmtp})
    app: App | None = None
    built: Site | None = None
    try:
        postfix.start()
        config = make_config(
            tmp, db_url,
            smtp={"require_auth": False, "xforward_hosts": [POSTFIX_ADDRESS],
                  "rate_per_minute": 1000},
            trust={"check_dkim_dmarc": True, "dns_resolver": dns_server.address,
                   "dns_timeout_seconds": 2},
            outbound={"relay_host": "127.0.0.1", "relay_port": postfix.port("relay"),
                      "relay_starttls": True, "relay_ca_file": "site-ca.pem",
                      "retry_schedule_seconds": [60, 60, 60]},
        )
        initialise(config)
        app = App.open(config)
        with transaction(app.sessions) as s:
            accounts.add(s, email=PROVIDER, name="Dr Pat Family", role="provider", approved=True)
            accounts.add(s, email=SPF_PROVIDER, name="Dr Sam Spf", role="provider",
                         approved=True)
            accounts.add(s, email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD,
                         approved=True)
        built = Site(app, config, postfix, dovecot, door_port, process_pool, keys, tmp)
        built.open_door()
        yield built
    finally:
        if built is not None:
            built.close_door()
        if app is not None:
            app.close()
        postfix.close()
        dovecot.stop()
        shutil.rmtree(mail_folder, ignore_errors=True)
        dns_server.stop()
        if request.param != "sqlite":
            _drop_pg_database(pg_name)


@pytest.fixture(autouse=True)
def postfix_log(site: Site) -> Iterator[None]:
    """Postfix's log of this test, printed (pytest shows it when the test fails)."""
    mark = site.postfix.log_mark()
    yield
    print(f"--- Postfix's log during this test ({site.postfix.log_path}) ---")
    print(site.postfix.log_since(mark))


# --- helpers ------------------------------------------------------------------------------------

def signed(msg: EmailMessage, keys: dict[str, tuple[bytes, str]]) -> bytes:
    """As the clinic's mail server sends it: DKIM-signed by clinic.test."""
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return dkim.sign(raw, b"sel1", b"clinic.test", keys["clinic.test"][0],
                     canonicalize=(b"relaxed", b"relaxed"),
                     include_headers=[b"from", b"to", b"subject"]) + raw


def a_case(sender: str, subject: str, photos: bool = True) -> EmailMessage:
    return case_email(sender, CASES, FULL_FORM, three_photos() if photos else [],
                      subject=subject)


def to_postfix(site: Site, raw: bytes, sender: str, helo: str = "mail.clinic.test") -> None:
    """From the outside, to Postfix's MX listener, as another site's server sends."""
    with smtplib.SMTP("127.0.0.1", site.postfix.port("mx"), timeout=30) as smtp:
        smtp.ehlo(helo)
        refused = smtp.sendmail(sender, [CASES], raw)
        assert not refused, refused


def arrived(site: Site, subject: str, timeout: float = 30) -> InboundMessage:
    """The one message with this Subject once the door has spooled it (Postfix passes it on in
    its own time)."""

    def probe() -> InboundMessage | None:
        rows = [r for r in _rows(site.app) if f"Subject: {subject}".encode()
                in site.app.blobs.get(r.blob_sha)]
        assert len(rows) <= 1, f"{subject!r} arrived {len(rows)} times"
        return rows[0] if rows else None

    return wait_until(probe, timeout, f"{subject!r} to reach mailflow through Postfix")


def _rows(app: App) -> list[InboundMessage]:
    with app.sessions() as session:
        return list(session.execute(select(InboundMessage)).scalars())


def processed(site: Site, row_id: int) -> InboundMessage:
    drain(site.app)
    with site.app.sessions() as session:
        row = session.get(InboundMessage, row_id)
        assert row is not None
        return row


def case_number(app: App, case_id: int | None) -> str:
    with app.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.number


def mailbox(site: Site, user: str, number: str) -> list[tuple[bytes, EmailMessage]]:
    """What reached the user's Dovecot INBOX about this case, read over IMAP: raw and parsed."""
    found = []
    for raw in site.dovecot.messages(user, MAILBOX_PASSWORD):
        msg = email.message_from_bytes(raw, policy=default_policy)
        if number in str(msg["Subject"]):
            found.append((raw, msg))
    return found  # type: ignore[return-value]


# --- the door and XFORWARD ----------------------------------------------------------------------

def test_xforward_is_neither_offered_nor_believed_from_other_addresses(site: Site) -> None:
    """Only Postfix (127.0.0.2, xforward_hosts) may name the client; anyone else could pick
    the address SPF is asked about."""
    with smtplib.SMTP("127.0.0.1", site.door_port, timeout=30) as smtp:
        code, features = smtp.ehlo("mail.clinic.test")
        assert code == 250 and b"XFORWARD" not in features
        assert smtp.docmd("XFORWARD", "ADDR=192.0.2.1 HELO=mail.clinic.test") == (
            550, b"5.7.0 XFORWARD is not permitted from this address")
    with smtplib.SMTP("127.0.0.1", site.door_port, timeout=30,
                      source_address=(POSTFIX_ADDRESS, 0)) as smtp:
        assert b"XFORWARD NAME ADDR" in smtp.ehlo("mx.derm.localhost")[1]
        assert smtp.docmd("XFORWARD", "ADDR=not-an-address")[0] == 501
        assert smtp.docmd("XFORWARD", "ADDR=192.0.2.1 HELO=mail.clinic.test")[0] == 250
        smtp.docmd("MAIL", f"FROM:<{PROVIDER}>")
        assert smtp.docmd("XFORWARD", "ADDR=192.0.2.9")[0] == 503  # not mid-transaction


# --- Postfix as the MX, and as the relay ---------------------------------------------------------

def test_a_signed_case_through_postfix_becomes_a_case_and_its_ack_reaches_the_mailbox(
    site: Site,
) -> None:
    """The whole way: provider -> Postfix (MX) -> door -> case -> outbox -> Postfix (relay,
    verified TLS) -> Dovecot (LMTP) -> IMAP, the acknowledgement's DKIM signature intact."""
    to_postfix(site, signed(a_case(PROVIDER, "Rash on both shins"), site.keys), PROVIDER)
    row = processed(site, arrived(site, "Rash on both shins").id)
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    # the client Postfix had (XFORWARD), not Postfix itself; TLS on Postfix's hop to the door
    assert (row.peer, row.helo, row.tls) == ("127.0.0.1", "mail.clinic.test", True)
    assert "dkim=pass header.d=clinic.test" in row.auth_results
    assert "dmarc=pass (p=reject) header.from=clinic.test" in row.auth_results
    number = case_number(site.app, row.case_id)

    mark = site.postfix.log_mark()
    deliver_due(site.app)
    [ack] = [o for o in outbox(site.app) if o.case_id == row.case_id and o.to_addr == PROVIDER]
    assert ack.status == OutboxStatus.SENT, ack.last_error
    [(raw, msg)] = wait_until(lambda: mailbox(site, PROVIDER, number), 30,
                              "the acknowledgement in the provider's mailbox")
    assert "received" in str(msg["Subject"]).lower()
    # it went through Postfix: its Received line, over TLS from mailflow, into Dovecot by LMTP
    received = [str(r) for r in msg.get_all("Received")]
    assert "with LMTP" in received[0] and "(Postfix) with ESMTPS" in received[1], received
    log = site.postfix.log_since(mark)
    assert "TLS connection established from localhost[127.0.0.1]" in log, log
    assert f"relay=127.0.0.1[127.0.0.1]:{site.dovecot.lmtp_port}" in log and "status=sent" in log

    (site.tmp / "acknowledgement.eml").write_bytes(raw)  # e.g. for dkimverify by hand
    name, value = printed_record(site.config)  # `mailflow dkim dns`, as published
    assert dkim.verify(raw, dnsfunc=dns_answering(name, value)), "the DKIM signature broke"
    assert not dkim.verify(raw.replace(b"Jane", b"Jone"), dnsfunc=dns_answering(name, value))


def test_an_address_mailflow_does_not_have_is_refused_by_postfix(site: Site) -> None:
    """No bounce later to a From: that may be forged: Postfix asks the door first."""
    with smtplib.SMTP("127.0.0.1", site.postfix.port("mx"), timeout=30) as smtp:
        smtp.ehlo("mail.clinic.test")
        smtp.mail(PROVIDER)
        code, text = smtp.rcpt("nobody@derm.localhost")
    assert code == 550 and b"Recipient address rejected" in text, (code, text)
    assert site.postfix.queue() == []


def test_spf_is_checked_for_the_client_postfix_names(site: Site) -> None:
    """spf-clinic.test's SPF names 127.0.0.1 (the sending client), not 127.0.0.2 (Postfix):
    without XFORWARD this unsigned message would fail SPF and be held."""
    msg = a_case(SPF_PROVIDER, "A mole that changed", photos=False)
    to_postfix(site, msg.as_bytes(), SPF_PROVIDER, helo="mail.spf-clinic.test")
    row = processed(site, arrived(site, "A mole that changed").id)
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert "spf=pass smtp.mailfrom=spf-clinic.test" in row.auth_results, row.auth_results
    assert (row.peer, row.helo) == ("127.0.0.1", "mail.spf-clinic.test")


def test_a_forged_from_injected_unsigned_into_postfix_is_held(site: Site) -> None:
    """Unsigned mail claiming to be the clinic's: by SMTP from this machine (SPF fails for
    127.0.0.1) and by Postfix's own sendmail (a local submission, no client: no SPF at all).
    Neither becomes a case nor gets an answer; the admin sees both held, with the reason."""
    to_postfix(site, a_case(PROVIDER, "Forged by SMTP", photos=False).as_bytes(), PROVIDER)
    injected = a_case(PROVIDER, "Forged by sendmail", photos=False).as_bytes()
    subprocess.run(["/usr/sbin/sendmail", "-C", str(site.postfix.config_dir), "-f", PROVIDER,
                    CASES], input=injected, check=True, timeout=30)
    by_smtp = processed(site, arrived(site, "Forged by SMTP").id)
    by_sendmail = processed(site, arrived(site, "Forged by sendmail").id)
    assert (by_smtp.peer, by_sendmail.peer) == ("127.0.0.1", "")  # ADDR=[UNAVAILABLE]
    assert "spf=fail smtp.mailfrom=clinic.test" in by_smtp.auth_results
    assert "dkim=none; spf=none" in by_sendmail.auth_results
    for row in (by_smtp, by_sendmail):
        assert (row.status, row.reason_code) == (MessageStatus.QUARANTINED, "unverified")
        assert FORGED in row.outcome and row.case_id is None
    assert not [o for o in outbox(site.app) if o.kind == "held"]  # no backscatter
    held = {m["id"]: m for m in cli_json(site.config, "messages", "list", "--status",
                                         "quarantined", "--json")}
    assert {by_smtp.id, by_sendmail.id} <= held.keys()
    assert all(FORGED in held[i]["outcome"] for i in (by_smtp.id, by_sendmail.id))


def test_while_the_door_is_down_postfix_keeps_the_case_and_it_arrives_once(site: Site) -> None:
    # Postfix has checked cases@ with the door before (address verification, cached); an
    # address it never checked would get 450 while the door is down: the sender retries
    with smtplib.SMTP("127.0.0.1", site.postfix.port("mx"), timeout=30) as smtp:
        smtp.ehlo("mail.clinic.test")
        smtp.mail(PROVIDER)
        assert smtp.rcpt(CASES)[0] == 250
        smtp.rset()
    site.close_door()
    try:
        to_postfix(site, signed(a_case(PROVIDER, "Waited in Postfix", photos=False), site.keys),
                   PROVIDER)
        deferred = wait_until(
            lambda: [m for m in site.postfix.queue() if m["queue_name"] == "deferred"], 30,
            "Postfix to defer the message")
        reason = str(deferred[0]["recipients"][0]["delay_reason"])  # type: ignore[index]
        assert f"[127.0.0.1]:{site.door_port}: Connection refused" in reason, reason
        assert not [r for r in _rows(site.app)
                    if b"Waited in Postfix" in site.app.blobs.get(r.blob_sha)]
    finally:
        site.open_door()  # on the same port, where Postfix's transport points
    site.postfix.flush()
    row = processed(site, arrived(site, "Waited in Postfix").id)
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    wait_until(lambda: site.postfix.queue() == [], 30, "Postfix's queue to empty")
    arrived(site, "Waited in Postfix")  # still once: Postfix did not send it twice


def test_while_postfix_is_short_of_space_the_ack_waits_in_the_outbox_then_goes_once(
    site: Site,
) -> None:
    to_postfix(site, signed(a_case(PROVIDER, "Itchy patch on the arm", photos=False),
                             site.keys), PROVIDER)
    row = processed(site, arrived(site, "Itchy patch on the arm").id)
    number = case_number(site.app, row.case_id)
    site.postfix.configure(queue_minfree=HUGE)  # "452 4.3.1 Insufficient system storage"
    try:
        wait_until(lambda: _mail_from_reply(site) == 452, 30, "Postfix to run short of space")
        deliver_due(site.app)
        [ack] = [o for o in outbox(site.app) if o.case_id == row.case_id]
        assert (ack.status, ack.attempts) == (OutboxStatus.QUEUED, 1)
        assert "452" in ack.last_error and "Insufficient system storage" in ack.last_error
        listed = cli_json(site.config, "outbox", "list", "--status", "queued", "--json")
        assert [m["last_error"] for m in listed if m["id"] == ack.id] == [ack.last_error]
        with TestClient(create_web_app(site.app)) as admin:
            assert sign_in(admin, ADMIN).status_code == 303
            page = admin.get("/outbox").text
        assert "Insufficient system storage" in page and ">queued</span>" in page
    finally:
        site.postfix.configure(queue_minfree="0")
    wait_until(lambda: _mail_from_reply(site) == 250, 30, "Postfix to take mail again")
    deliver_due(site.app)  # not due yet: the next try is a minute away
    assert mailbox(site, PROVIDER, number) == []
    with time_machine.travel(utcnow() + timedelta(minutes=2)):
        deliver_due(site.app)
    [ack] = [o for o in outbox(site.app) if o.case_id == row.case_id]
    assert (ack.status, ack.attempts) == (OutboxStatus.SENT, 2)
    wait_until(lambda: mailbox(site, PROVIDER, number), 30, "the acknowledgement")
    assert len(mailbox(site, PROVIDER, number)) == 1


def _mail_from_reply(site: Site) -> int:
    """Postfix's answer to MAIL FROM on the relay listener, as mailflow would get it."""
    with smtplib.SMTP("127.0.0.1", site.postfix.port("relay"), timeout=30) as smtp:
        smtp.starttls()
        smtp.ehlo("mailflow.test")
        code, _text = smtp.mail(CASES)
        smtp.rset()
        return code
