"""Issue #12 item 3: MX mode, where mail arrives from the internet with nobody upstream to trust.

Each message comes through the real SMTP door without AUTH; mailflow asks a real (tiny) DNS
server for the provider domain's DKIM key, SPF and DMARC records, and accepts the provider's
mail only when a DKIM (or SPF) pass is aligned with From:. The door runs in a thread; the
worker runs in the test (drain), so the test decides when a retry is due (time-machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
import time_machine

from mailflow.app import App, initialise
from mailflow.db.models import InboundMessage, MessageStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from mailflow.workflow.worker import drain
from tests.conftest import RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import run_cli
from tests.support.db import accepted_id, case_count, message, outbox
from tests.support.dns import TinyDns, signing_key, txt_strings
from tests.support.mail import FULL_FORM, case_email, submit

PROVIDER = "dr.family@clinic.test"
SPF_PROVIDER = "dr.spf@spf-clinic.test"  # a domain whose SPF names this machine, no DKIM
AUTHSERV = "derm.localhost"  # mailflow's own authserv-id: the mail domain
FORGED = "no DKIM signature or SPF pass aligned with it, so From: may be forged"


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, str]]:
    return {"clinic.test": signing_key(), "mailer.test": signing_key()}


@pytest.fixture
def dns_server(keys: dict[str, tuple[bytes, str]]) -> Iterator[TinyDns]:
    server = TinyDns({
        ("sel1._domainkey.clinic.test", "TXT"): [txt_strings(keys["clinic.test"][1])],
        # the clinic sends from its own servers only: a local Postfix is not one of them
        ("clinic.test", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 -all"'],
        ("_dmarc.clinic.test", "TXT"): ['"v=DMARC1; p=reject; adkim=r; aspf=r"'],
        ("sel1._domainkey.mailer.test", "TXT"): [txt_strings(keys["mailer.test"][1])],
        ("spf-clinic.test", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
        ("_dmarc.spf-clinic.test", "TXT"): ['"v=DMARC1; p=quarantine"'],
    }).start()
    yield server
    server.stop()


@pytest.fixture
def mx(tmp_path: Path, db_url: str, dns_server: TinyDns,
       process_pool) -> Iterator[RunningService]:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, db_url, smtp={"require_auth": False},
                         trust={"check_dkim_dmarc": True, "dns_resolver": dns_server.address,
                                "dns_timeout_seconds": 2})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email=PROVIDER, name="Dr Pat Family", role="provider", approved=True)
        accounts.add(s, email=SPF_PROVIDER, name="Dr Sam Spf", role="provider", approved=True)
    running = RunningService(app, process_pool, ("smtp",)).start()  # the worker: drain() below
    try:
        yield running
    finally:
        running.stop()
        app.close()


def signed(msg: EmailMessage, domain: str, keys: dict[str, tuple[bytes, str]]) -> bytes:
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signature = dkim.sign(raw, b"sel1", domain.encode(), keys[domain][0],
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"from", b"to", b"subject"])
    return signature + raw


def arrive(mx: RunningService, raw: bytes, sender: str = PROVIDER) -> int:
    """Through the door without AUTH, as an MX receives it; then one worker pass."""
    code, text = submit(mx.port, None, None, raw, sender, [CASES])
    assert code == 250, text
    drain(mx.app)
    return accepted_id(text)


def held_as_forged(mx: RunningService, row: InboundMessage) -> None:
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "unverified"
    assert FORGED in row.outcome, row.outcome
    assert case_count(mx.app) == 0
    assert outbox(mx.app) == []  # nothing to the address in From: (it may not have sent it)


def test_a_signed_aligned_case_is_made_and_its_results_recorded(
    mx: RunningService, keys: dict[str, tuple[bytes, str]]
) -> None:
    raw = signed(case_email(PROVIDER, CASES, FULL_FORM, three_photos()), "clinic.test", keys)
    row = message(mx.app, arrive(mx, raw))
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert case_count(mx.app) == 1
    assert row.auth_results == (
        f"{AUTHSERV}; dkim=pass header.d=clinic.test header.s=sel1; "
        "spf=fail smtp.mailfrom=clinic.test; dmarc=pass (p=reject) header.from=clinic.test")


def test_spf_alone_aligned_with_from_is_enough(mx: RunningService) -> None:
    raw = case_email(SPF_PROVIDER, CASES, FULL_FORM, three_photos()).as_bytes()
    row = message(mx.app, arrive(mx, raw, SPF_PROVIDER))
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert "spf=pass smtp.mailfrom=spf-clinic.test" in row.auth_results
    assert "dmarc=pass (p=quarantine) header.from=spf-clinic.test" in row.auth_results


def test_unsigned_mail_with_a_providers_from_is_held_and_nobody_is_told(
    mx: RunningService,
) -> None:
    """A local Postfix (127.0.0.1, not in clinic.test's SPF) injecting unsigned mail."""
    row = message(mx.app, arrive(mx, case_email(PROVIDER, CASES).as_bytes()))
    held_as_forged(mx, row)
    assert "(no DKIM signature; SPF fail for clinic.test)" in row.outcome
    assert "dkim=none; spf=fail" in row.auth_results
    assert "dmarc=fail (p=reject) header.from=clinic.test" in row.auth_results
    # what the admin reads: the reason, and the results mailflow recorded
    listed = json.loads(run_cli(mx.app.config, "messages", "list", "--status", "quarantined",
                                "--json").stdout)
    assert [(m["reason_code"], m["auth_results"]) for m in listed] == [
        ("unverified", row.auth_results)]
    assert FORGED in listed[0]["outcome"]


def test_a_signature_broken_by_a_changed_body_is_held(
    mx: RunningService, keys: dict[str, tuple[bytes, str]]
) -> None:
    raw = signed(case_email(PROVIDER, CASES), "clinic.test", keys)
    raw = raw.replace(b"itchy scaly", b"itchy, scaly")
    row = message(mx.app, arrive(mx, raw))
    held_as_forged(mx, row)
    assert "DKIM fail for clinic.test (body hash mismatch)" in row.outcome
    assert "dkim=fail (body hash mismatch) header.d=clinic.test" in row.auth_results


def test_a_valid_signature_of_another_domain_is_not_aligned(
    mx: RunningService, keys: dict[str, tuple[bytes, str]]
) -> None:
    raw = signed(case_email(PROVIDER, CASES), "mailer.test", keys)
    row = message(mx.app, arrive(mx, raw))
    held_as_forged(mx, row)
    assert "DKIM neutral for mailer.test (not the From: domain's" in row.outcome
    assert "dkim=neutral (not the From: domain's, so not checked) header.d=mailer.test" in (
        row.auth_results)


def test_while_dns_is_down_the_message_waits_then_goes_through(
    mx: RunningService, dns_server: TinyDns, keys: dict[str, tuple[bytes, str]]
) -> None:
    dns_server.stop()
    raw = signed(case_email(PROVIDER, CASES, FULL_FORM, three_photos()), "clinic.test", keys)
    message_id = arrive(mx, raw)
    row = message(mx.app, message_id)
    assert row.status == MessageStatus.RECEIVED and row.not_before is not None
    assert "DNS did not answer" in row.last_error
    assert case_count(mx.app) == 0 and outbox(mx.app) == []

    dns_server.start()  # back, on the same address
    drain(mx.app)
    assert message(mx.app, message_id).status == MessageStatus.RECEIVED  # not yet due
    with time_machine.travel(row.not_before + timedelta(seconds=1), tick=False):
        drain(mx.app)
    row = message(mx.app, message_id)
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert case_count(mx.app) == 1
