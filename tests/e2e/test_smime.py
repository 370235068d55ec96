"""Issue #12 item 4: S/MIME (Direct), end to end over real SMTP, with `openssl cms` as the
provider's mail client. openssl signs and encrypts what mailflow receives; what mailflow sends
is decrypted and verified by openssl, and the PDF inside read with pypdf. The CA, mailflow's
certificate and the providers' are made here, for this test."""

from __future__ import annotations

import email
from email.policy import default as default_policy
from pathlib import Path

import dkim
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.crypto.dkim import dns_record, load_key
from mailflow.db.models import InboundMessage, MessageStatus, OutboundMessage
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import accepted_id, case_count, wait_final
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.review import ANSWER, answer, pdf_text
from tests.support.routing import route_now
from tests.support.sink import Delivered, RelaySink
from tests.support.smime import Pki, entity, outer
from tests.support.tls_ca import TestCA
from tests.support.web import sign_in

CIPHER = {"test_a_signed_encrypted_case_and_its_encrypted_report": "aes-256-gcm",
          "test_bad_smime_is_held_with_a_reason": "aes-256-cbc",
          "test_a_signer_cannot_name_another_provider_in_from": "aes-256-cbc",
          "test_a_sha1_signature_inside_encryption_makes_no_case": "aes-256-gcm"}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink, pki: Pki,
           request: pytest.FixtureRequest) -> Config:
    """Case mail carries no PHI ([mail] phi_in_email = false) unless it is S/MIME protected."""
    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
        mail={"phi_in_email": False},
        smime=pki.smime_config(CIPHER[request.node.originalname]),
    )
    initialise(cfg)
    return cfg


def send(service: RunningService, who: str, raw: bytes) -> InboundMessage:
    code, text = submit(service.port, who, PASSWORD, raw, mail_from=who, rcpt=[CASES])
    assert code == 250, text
    return wait_final(service.app, accepted_id(text))


def is_smime(delivered: Delivered) -> bool:
    return delivered.message.get_content_type() == "application/pkcs7-mime"


def test_a_signed_encrypted_case_and_its_encrypted_report(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], pki: Pki,
) -> None:
    cert, key = pki.issue("provider", provider)
    case = case_email(provider, CASES, FULL_FORM, three_photos())
    signed = pki.sign(entity(case), cert, key)
    sent = pki.encrypt(signed, pki.mailflow_cert, "aes-256-gcm", provider)
    assert b"smime-type=authEnveloped-data" in sent and b"Nummular" not in sent

    row = send(service, provider, sent)
    assert row.status == MessageStatus.PROCESSED, row.outcome
    assert row.smime == f"S/MIME signed by {provider} (mailflow test CA), encrypted"
    number = cli_json(config, "cases", "list")[0]["number"]
    shown = run_cli(config, "cases", "show", number).stdout
    assert f"S/MIME signed by {provider} (mailflow test CA), encrypted" in shown
    detail = cli_json(config, "cases", "show", number)
    assert len(detail["images"]) == 3 and detail["patient"]["name"] == "Jane Testpatient"
    with TestClient(create_web_app(app)) as browser:  # the case page says it too
        assert sign_in(browser, dermatologists[0]).status_code == 303
        page = browser.get(f"/cases/{number}").text
        assert f"S/MIME signed by {provider} (mailflow test CA), encrypted" in page

    # the certificate the message carried is offered; until approved, mail is not encrypted
    [offered] = cli_json(config, "users", "cert", provider)
    assert (offered["status"], offered["source"]) == ("pending", "message")
    ack = sink.wait_for(provider)[0]
    assert not is_smime(ack) and "Jane Testpatient" not in ack.raw.decode()
    run_cli(config, "users", "cert", provider, "--approve", offered["fingerprint"][:16])

    notification = sink.wait_for(dermatologists[0])[0]
    answer(service, app, dermatologists[0], notification, ANSWER)
    report = sink.wait_for(provider, count=2)[1]
    assert is_smime(report)
    record = dns_record(load_key(config.dkim_key_path), config.dkim.selector, config.mail.domain)
    assert dkim.verify(report.raw, dnsfunc=lambda _name, timeout=5: record.value.encode())
    assert report.message.get_param("smime-type") == "authEnveloped-data"
    assert b"Nummular" not in report.raw and number in str(report.message["Subject"])

    pki.write("report.eml", report.raw)  # as delivered, for checking by hand (--basetemp)
    content = pki.decrypt_and_verify(report.raw, cert, key)
    inner = email.message_from_bytes(content, policy=default_policy)
    [pdf] = [p for p in inner.walk() if p.get_content_type() == "application/pdf"]
    text = pdf_text(pdf.get_content())
    assert "Nummular eczema" in text and "Jane Testpatient" in text
    assert any("CMS Verification successful" in line for line in pki.log)
    print("\n\n".join(pki.log))  # the round trip's commands, for the closing note (pytest -s)


def bad_messages(pki: Pki, provider: str, tmp_path: Path) -> dict[str, bytes]:
    """One message per way an S/MIME message can fail, each made by openssl."""
    cert, key = pki.issue("provider", provider)
    case = entity(case_email(provider, CASES, FULL_FORM, three_photos()[:1]))
    good = pki.sign(case, cert, key)
    tampered = good.replace(b"Jane Testpatient", b"June Testpatient", 1)  # after signing
    assert tampered != good
    old_cert, old_key = pki.issue("expired", provider, days=10, ago_days=20)
    stranger_cert, stranger_key = pki.issue("stranger", provider, ca=TestCA("another CA"))
    other_cert, other_key = pki.issue("other", "dr.other@clinic.test")
    garbage = (f"From: {provider}\r\nTo: {CASES}\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
               "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
               "Content-Transfer-Encoding: base64\r\n\r\nTm90IENNUyBhdCBhbGw=\r\n").encode()
    return {
        "smime-bad-signature": outer(tampered, provider),
        "smime-expired": outer(pki.sign(case, old_cert, old_key), provider),
        "smime-untrusted": outer(pki.sign(case, stranger_cert, stranger_key), provider),
        "smime-signer-mismatch": outer(pki.sign(case, other_cert, other_key), provider),
        # the provider's own trusted certificate, but a hash with known collisions
        "smime-weak-hash": outer(pki.sign(case, cert, key, "-md", "sha1"), provider),
        "smime-not-for-us": pki.encrypt(good, cert, "aes-256-cbc", provider),
        "smime-unreadable": garbage,
    }


def test_bad_smime_is_held_with_a_reason(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    pki: Pki, tmp_path: Path,
) -> None:
    messages = bad_messages(pki, provider, tmp_path)
    # the admin adds the provider's certificate (approved as added); others are refused
    [added] = cli_json(config, "users", "cert", provider, "--file",
                       str(pki.folder / "provider.pem"))
    assert (added["status"], added["source"]) == ("approved", "admin")
    for name, why in (("stranger", "does not chain to a trusted authority"),
                      ("other", "not dr.family@clinic.test")):
        refused = run_cli(config, "users", "cert", provider, "--file",
                          str(pki.folder / f"{name}.pem"), check=False)
        assert refused.returncode == 1 and why in refused.stderr, refused.stderr

    for code, raw in messages.items():
        row = send(service, provider, raw)
        assert (row.status, row.route, row.reason_code) == (
            MessageStatus.QUARANTINED, "smime", code), (code, row.outcome)
        assert row.outcome and "Testpatient" not in row.outcome
    assert case_count(app) == 0
    with app.sessions() as session:
        held = session.execute(select(InboundMessage)).scalars().all()
    assert {m.reason_code for m in held} == set(messages)
    listed = run_cli(config, "messages", "list", "--status", "quarantined").stdout
    assert "has expired" in listed and "encrypted for someone else" in listed
    assert "the signature uses SHA-1, a hash too weak to trust" in listed
    with transaction(app.sessions) as session:
        accounts.add(session, email="admin@derm.localhost", name="Ada Admin", role="admin",
                     password=PASSWORD, approved=True)
    with TestClient(create_web_app(app)) as browser:  # the admin's quarantine page
        assert sign_in(browser, "admin@derm.localhost").status_code == 303
        page = browser.get("/quarantine").text
        assert "smime-signer-mismatch" in page and "does not chain to a trusted" in page
        assert "/attach" not in page and "/release" not in page  # neither can make it good

    # the signed-in provider is told, in a reply encrypted to their approved certificate
    replies = sink.wait_for(provider, count=len(messages))
    assert all(is_smime(r) and r.message.get_param("smime-type") == "enveloped-data"
               for r in replies)
    texts = []
    for reply in replies:  # each opens with the provider's key and verifies as mailflow's
        content = pki.decrypt_and_verify(reply.raw, pki.folder / "provider.pem",
                                         pki.folder / "provider.key")
        body = email.message_from_bytes(content, policy=default_policy).get_body(("plain",))
        assert body is not None
        texts.append(body.get_content())
    assert any("its signature does not match the message" in t for t in texts)
    assert any("it was locked for someone else" in t for t in texts)
    assert any("no longer safe" in t and "sign with SHA-256" in t for t in texts)


def test_a_sha1_signature_inside_encryption_makes_no_case(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    pki: Pki,
) -> None:
    """RFC 8551 2.1, Direct: MD5 and SHA-1 prove nothing (collisions), though openssl verifies
    them. Signed by the provider's trusted certificate, then encrypted to mailflow: held."""
    cert, key = pki.issue("provider", provider)
    case = entity(case_email(provider, CASES, FULL_FORM, three_photos()[:1]))
    for md, name in (("sha1", "SHA-1"), ("md5", "MD5")):
        sent = pki.encrypt(pki.sign(case, cert, key, "-md", md), pki.mailflow_cert,
                           "aes-256-gcm", provider)
        row = send(service, provider, sent)
        assert (row.status, row.route, row.reason_code) == (
            MessageStatus.QUARANTINED, "smime", "smime-weak-hash"), row.outcome
        assert row.outcome and f"uses {name}, a hash too weak" in row.outcome
        assert "Testpatient" not in row.outcome
    assert case_count(app) == 0
    listed = run_cli(config, "messages", "list", "--status", "quarantined").stdout
    assert "the signature uses MD5, a hash too weak to trust" in listed
    replies = sink.wait_for(provider, count=2)  # no approved certificate: told in the clear
    assert all("no longer safe" in r.text and "sign with SHA-256" in r.text for r in replies)
    assert all(b"Testpatient" not in r.raw for r in replies)


def test_a_signer_cannot_name_another_provider_in_from(app: App, provider: str,
                                                        pki: Pki) -> None:
    """Review: crypto/smime.py read the first From: address as written ("dr.other"@...,
    unquoted to dr.other@), the parser the first one it finds clean (the provider). So a
    stranger with any certificate from a trusted CA was verified as the provider, without
    SMTP AUTH. The signer must name the From: the parser reads, or nothing is read."""
    cert, key = pki.issue("other", "dr.other@clinic.test")
    case = entity(case_email(provider, CASES, FULL_FORM, three_photos()[:1]))
    forged = outer(pki.sign(case, cert, key), f'"dr.other"@clinic.test, {provider}')
    _, outcome = route_now(app, forged, "dr.other@clinic.test", CASES, auth=False)
    assert (outcome.status, outcome.route, outcome.reason_code) == (
        MessageStatus.QUARANTINED, "smime", "smime-signer-mismatch")
    assert case_count(app) == 0
    with app.sessions() as session:  # nor is the provider it named told anything
        assert not session.execute(select(OutboundMessage)).scalars().all()
