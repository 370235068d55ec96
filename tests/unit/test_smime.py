"""crypto/smime.py and its openssl wrapper on bad and unusual input: every one an answer with
a reason, never an exception, never content. `openssl cms` makes the messages."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailflow.crypto import openssl_cms
from mailflow.crypto.openssl_cms import CmsFailure
from mailflow.crypto.smime import headers_only, is_smime, unwrap
from mailflow.crypto.smime_certs import (
    CertificateError,
    Identity,
    SmimeKeyError,
    load_one,
    usable_for,
)
from mailflow.crypto.smime_out import protect_message
from mailflow.parse.analyze import analyze
from mailflow.parse.types import ImageLimits, MimeLimits
from tests.support.smime import DOC, INNER, MAILFLOW, Pki, doc_pki, mailflow_identity, outer
from tests.support.tls_ca import TestCA


def now() -> dt.datetime:
    """The time of the check: the module's certificates are made when its first test runs,
    which in a long suite is minutes after this module was imported."""
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return doc_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def identity(pki: Pki) -> Identity:
    return mailflow_identity(pki)


def headed(body: str) -> bytes:
    return (f"From: {DOC}\r\nTo: {MAILFLOW}\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            + body).encode()


def test_a_plain_message_comes_back_as_it_is(identity: Identity) -> None:
    raw = headed("Content-Type: text/plain\r\n\r\nhello\r\n")
    assert not is_smime(raw)
    opened = unwrap(raw, identity, now())
    assert (opened.raw, opened.layers, opened.problem_code, opened.summary) == (raw, (), "", "")


def test_encrypted_but_unsigned_is_opened_and_says_so(pki: Pki, identity: Identity) -> None:
    raw = pki.encrypt(INNER, pki.mailflow_cert, "aes-256-cbc", DOC)
    opened = unwrap(raw, identity, now())
    assert opened.layers == ("encrypted",) and opened.signer is None
    assert opened.summary == "S/MIME encrypted, not signed"
    assert b"Jane Testpatient" in opened.raw and b"\r\nFrom: doc@clinic.test\r\n" in opened.raw


def test_inner_headers_do_not_double_the_outer_ones(pki: Pki, identity: Identity) -> None:
    """A client that copies From/Subject into the signed entity: the outer ones stay, once."""
    inner = b"From: someone@else.test\r\nSubject: inner\r\n" + INNER
    signed = pki.sign(inner, pki.folder / "doc.pem", pki.folder / "doc.key")
    opened = unwrap(outer(signed, DOC), identity, now())
    assert opened.problem_code == "" and opened.raw.count(b"From:") == 1
    assert b"someone@else" not in opened.raw and opened.signer is not None


def test_signed_data_opaque_form_is_verified(pki: Pki, identity: Identity) -> None:
    signed = pki.cms("-sign", "-nodetach", "-signer", str(pki.folder / "doc.pem"), "-inkey",
                     str(pki.folder / "doc.key"), data=INNER).stdout
    assert b"smime-type=signed-data" in signed
    opened = unwrap(outer(signed, DOC), identity, now())
    assert opened.layers == ("signed",) and b"Jane Testpatient" in opened.raw
    # an older client that leaves smime-type out: the DER says what it is
    bare = signed.replace(b" smime-type=signed-data;", b"")
    assert b"smime-type" not in bare
    assert unwrap(outer(bare, DOC), identity, now()).layers == ("signed",)


@pytest.mark.parametrize("body, code", [
    ("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"\x30\x03\x02\x01\x00")
     .decode() + "\r\n", "smime-unreadable"),
    ("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n", "smime-unreadable"),
    ("Content-Type: application/x-pkcs7-mime; smime-type=signed-data\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\nnot base64 at all!!\r\n", "smime-unreadable"),
    ('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=b\r\n\r\n'
     "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n", "smime-unreadable"),
])
def test_broken_structures_are_held_as_unreadable(identity: Identity, body: str,
                                                  code: str) -> None:
    opened = unwrap(headed(body), identity, now())
    assert opened.problem_code == code and opened.raw == b"" and opened.problem


def test_truncated_ciphertext(pki: Pki, identity: Identity) -> None:
    raw = pki.encrypt(INNER, pki.mailflow_cert, "aes-256-gcm", DOC)
    head, _, body = raw.partition(b"\n\n")
    der = base64.b64decode(body)
    cut = head + b"\n\n" + base64.encodebytes(der[: len(der) // 2])
    opened = unwrap(cut.replace(b"\n", b"\r\n"), identity, now())
    assert opened.problem_code in ("smime-not-for-us", "smime-unreadable") and not opened.raw


def test_a_signature_from_the_future_is_not_valid_yet(pki: Pki, identity: Identity) -> None:
    signed = pki.sign(INNER, pki.folder / "doc.pem", pki.folder / "doc.key")
    opened = unwrap(outer(signed, DOC), identity, now() - dt.timedelta(days=365))
    assert opened.problem_code == "smime-expired" and "not valid yet" in opened.problem


def test_too_many_layers(pki: Pki, identity: Identity) -> None:
    data = INNER
    for _ in range(5):
        data = pki.sign(data, pki.folder / "doc.pem", pki.folder / "doc.key")
    opened = unwrap(outer(data, DOC), identity, now())
    assert opened.problem_code == "smime-unreadable" and "layers" in opened.problem


def test_headers_only_keeps_who_and_drops_the_content() -> None:
    raw = headed("Content-Type: text/plain\r\n\r\nPatient name: Jane\r\n")
    kept = headers_only(raw)
    assert b"From: doc@clinic.test" in kept and b"Jane" not in kept
    assert b"Content-Type" not in kept


def test_our_own_output_opens_with_our_own_reader(pki: Pki, identity: Identity) -> None:
    """mailflow's outbound, encrypted to itself: unwrap reads what protect wrote."""
    raw = headed("Content-Type: text/plain\r\n\r\nreport\r\n").replace(
        f"From: {DOC}".encode(), f"From: {MAILFLOW}".encode())
    sealed = protect_message(raw, identity, [])
    assert b"report" not in sealed and b"smime-type=enveloped-data" in sealed
    opened = unwrap(sealed, identity, now())
    assert opened.layers == ("encrypted", "signed") and b"report" in opened.raw


def test_certificates_that_cannot_be_used(pki: Pki) -> None:
    doc = load_one((pki.folder / "doc.pem").read_bytes())
    assert usable_for(doc, "DOC@clinic.test").emails == (DOC,)
    with pytest.raises(CertificateError, match="not other@clinic.test"):
        usable_for(doc, "other@clinic.test")
    with pytest.raises(CertificateError, match="not a certificate"):
        load_one(b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    ec_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now()).not_valid_after(now() + dt.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(DOC)]), False)
               .sign(key, hashes.SHA256()))
    with pytest.raises(CertificateError, match="not RSA"):
        usable_for(ec_cert, DOC)
    der = ec_cert.public_bytes(serialization.Encoding.DER)
    assert load_one(der) == ec_cert


def test_identity_checks_key_and_certificate_belong_together(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(SmimeKeyError, match="not the certificate of the key"):
        Identity.load(pki.folder / "doc.key", pki.mailflow_cert, pki.anchors, "aes-256-cbc")
    with pytest.raises(SmimeKeyError, match="trust anchors"):
        Identity.load(pki.mailflow_key, pki.mailflow_cert, tmp_path / "none.pem", "aes-256-cbc")


def test_only_the_configured_anchors_are_trusted(pki: Pki, identity: Identity,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA the machine trusts (openssl's default folder, here SSL_CERT_DIR) is no anchor."""
    public = TestCA("a public CA")
    (tmp_path / "public.pem").write_bytes(public.cert_pem)
    subprocess.run(["openssl", "rehash", str(tmp_path)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "public.pem"))
    cert, key = pki.issue("public-doc", DOC, ca=public)
    opened = unwrap(outer(pki.sign(INNER, cert, key), DOC), identity, now())
    assert opened.problem_code == "smime-untrusted" and not opened.raw


def test_unsigned_lines_in_the_outer_headers_never_reach_the_signed_body(
        pki: Pki, identity: Identity) -> None:
    """Review: a line that is not a header field ends the headers for the parser. Copied into
    the opened message, it and the lines after it became the body of a message counted as
    signed: anyone holding one entity a provider signed could write the case form around it."""
    signed = pki.sign(INNER, pki.folder / "doc.pem", pki.folder / "doc.key")
    head, _, body = outer(signed, DOC).partition(b"\r\n\r\n")
    forged = (head + b"\r\nSee below\r\nPatient name: Someone Injected\r\nDate of birth: "
              b"1970-01-01\r\n\r\n" + body)
    opened = unwrap(forged, identity, now())
    assert opened.problem_code == "" and opened.signer is not None
    analysis = analyze(opened.raw, DOC, MimeLimits(), ImageLimits())
    assert "Injected" not in analysis.body and "Jane Testpatient" in analysis.body
    assert b"Injected" not in headers_only(forged)


def test_a_weak_rsa_key_is_not_trusted_for_signing_or_encrypting_to(
        pki: Pki, identity: Identity) -> None:
    """Review: openssl checks no key size unless told (-auth_level): a 1024-bit certificate
    from a trusted CA proved the sender, and PHI could be encrypted to one."""
    cert, key = pki.issue("weak-doc", DOC, key_bits=1024)
    opened = unwrap(outer(pki.sign(INNER, cert, key), DOC), identity, now())
    assert opened.problem_code == "smime-untrusted" and "too weak" in opened.problem
    with pytest.raises(CmsFailure, match="too weak"):
        openssl_cms.check_chain(cert.read_bytes(), pki.anchors, now())
    openssl_cms.check_chain((pki.folder / "doc.pem").read_bytes(), pki.anchors, now())


def test_a_certificate_for_another_purpose_is_named_so(pki: Pki, identity: Identity) -> None:
    """Review: OpenSSL 3 says 'unsuitable certificate purpose' (1.1 said 'unsupported'), so a
    web server's certificate was reported as not chaining to a trusted authority, which
    points the admin at the anchors instead."""
    cert, key = pki.ca.issue("clinic.test")
    signed = pki.sign(INNER, pki.write("server.pem", cert), pki.write("server.key", key))
    opened = unwrap(outer(signed, DOC), identity, now())
    assert opened.problem_code == "smime-untrusted"
    assert "not for signing email" in opened.problem
