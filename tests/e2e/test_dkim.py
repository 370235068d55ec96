"""Issue #12 item 2: every outgoing message is DKIM-signed. What reached the relay is checked by
dkimpy's verifier (its own code path, not the signing one) against nothing but the TXT record
that `mailflow dkim dns` printed, run as a real command."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import dkim
import pytest

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.crypto.dkim import create_key, dns_record, load_key
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import outbox
from tests.support.dkim_dns import DnsFunc, dns_answering, printed_record
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.review import ANSWER, answer, open_case
from tests.support.sink import Delivered, RelaySink


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    """The key `mailflow init` makes in the storage folder (not the tests' shared one)."""
    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
        dkim={"key_file": ""},
    )
    initialise(cfg)
    return cfg


def signature_tags(raw: bytes) -> dict[str, str]:
    header = str(message_from_bytes(raw, policy=SMTP_POLICY)["DKIM-Signature"])
    tags = (part.split("=", 1) for part in header.split(";") if "=" in part)
    return {key.strip(): re.sub(r"\s+", "", value) for key, value in tags}


def part_tampered(raw: bytes, content_type: bytes) -> bytes:
    """The message with one character changed in the content of its first part of that type
    (whatever its transfer encoding)."""
    found = re.search(rb"Content-Type: " + re.escape(content_type) + rb".*?\r\n\r\n[^A-Za-z]*",
                      raw, re.DOTALL)
    assert found is not None, content_type
    at = found.end()
    flipped = b"B" if raw[at:at + 1] == b"A" else b"A"
    assert raw.index(b"\r\n\r\n") < at  # in the body, not the headers
    return raw[:at] + flipped + raw[at + 1:]


def assert_signed_by_us(delivered: Delivered, config: Config, lookup: DnsFunc) -> None:
    assert dkim.verify(delivered.raw, dnsfunc=lookup), "the relayed message does not verify"
    tags = signature_tags(delivered.raw)
    assert tags["d"] == config.mail.domain == delivered.message["From"].addresses[0].domain
    assert tags["s"] == config.dkim.selector and tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    signed = tags["h"].lower().split(":")
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                 "auto-submitted"):
        assert name in signed, name


def test_the_acknowledgement_as_relayed_verifies_against_the_printed_record(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
) -> None:
    code, text = submit(service.port, provider, PASSWORD,
                        case_email(provider, CASES, FULL_FORM, three_photos()))
    assert code == 250, text
    ack = sink.wait_for(provider)[0]
    name, value = printed_record(config)
    assert name == f"mailflow._domainkey.{config.mail.domain}"
    assert value.startswith("v=DKIM1; k=rsa; p=")
    lookup = dns_answering(name, value)
    assert_signed_by_us(ack, config, lookup)
    # signed once, when queued: the stored message is byte for byte what the relay got
    [row] = [r for r in outbox(app) if r.to_addr == provider]
    assert app.blobs.get(row.blob_sha) == ack.raw

    assert not dkim.verify(part_tampered(ack.raw, b"text/plain"), dnsfunc=lookup)
    retitled = ack.raw.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
    assert retitled != ack.raw and not dkim.verify(retitled, dnsfunc=lookup)
    other = tmp_key_record(config, name)  # a record of another key: the signature is not its
    assert not dkim.verify(ack.raw, dnsfunc=dns_answering(name, other))
    assert not dkim.verify(ack.raw, dnsfunc=dns_answering("elsewhere._domainkey.test", value))


def tmp_key_record(config: Config, name: str) -> str:
    path = config.storage_dir / "other.key"
    create_key(path, 2048)
    return dns_record(load_key(path), name.split(".")[0], config.mail.domain).value


def test_the_consult_report_with_its_pdf_verifies(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    _number, ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, ANSWER)
    consult = [m for m in sink.wait_for(provider, count=2)
               if "consult report" in str(m.message["Subject"])][0]
    assert any(p.get_content_type() == "application/pdf"
               for p in consult.message.iter_attachments())
    lookup = dns_answering(*printed_record(config))
    for delivered in (ack, notification, consult):
        assert_signed_by_us(delivered, config, lookup)
    # one changed character in the PDF's base64 lines breaks it
    assert not dkim.verify(part_tampered(consult.raw, b"application/pdf"), dnsfunc=lookup)


def test_init_makes_the_key_once_and_dkim_dns_prints_it(config: Config) -> None:
    path = config.dkim_key_path
    assert path == config.storage_dir / "dkim" / "mailflow.key"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    before = path.read_bytes()
    again = run_cli(config, "init").stdout
    assert "DKIM" not in again and path.read_bytes() == before  # idempotent: the same key
    shown = cli_json(config, "dkim", "dns")
    assert shown["name"] == "mailflow._domainkey.derm.localhost" and shown["type"] == "TXT"
    assert "".join(shown["strings"]) == shown["value"] == printed_record(config)[1]
    assert shown["value"] == dns_record(load_key(path), "mailflow", "derm.localhost").value

    path.unlink()
    missing = run_cli(config, "dkim", "dns", check=False)
    assert missing.returncode == 1 and "mailflow init" in missing.stderr, missing.stderr
    refused = run_cli(config, "cases", "list", check=False)  # nothing runs to send unsigned
    assert refused.returncode == 1 and "no DKIM signing key" in refused.stderr
    made = run_cli(config, "init").stdout
    assert f"created the DKIM signing key {path}" in made and path.read_bytes() != before
