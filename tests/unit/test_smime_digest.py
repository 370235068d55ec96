"""crypto/smime_digest.py: a signature made with MD5 or SHA-1 proves nothing (RFC 8551 2.1,
Direct), though openssl verifies it. `openssl cms -sign -md ...` makes each signature; the
structure is read from it as smime.py reads it, through openssl_cms.structure."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms

from mailflow.crypto import openssl_cms, smime_digest
from mailflow.crypto.openssl_cms import CmsFailure
from mailflow.crypto.smime import unwrap
from mailflow.crypto.smime_certs import Identity
from tests.support.smime import DOC, INNER, Pki, doc_pki, mailflow_identity, outer

SHA256_OID = bytes.fromhex("0609608648016503040201")  # 2.16.840.1.101.3.4.2.1, DER


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return doc_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def identity(pki: Pki) -> Identity:
    return mailflow_identity(pki)


def signed(pki: Pki, *options: str) -> bytes:
    return pki.sign(INNER, pki.folder / "doc.pem", pki.folder / "doc.key", *options)


def der(pki: Pki, *options: str) -> bytes:
    return openssl_cms.structure(signed(pki, *options))


@pytest.mark.parametrize(("md", "weak"), [("md5", "MD5"), ("sha1", "SHA-1"), ("sha256", ""),
                                          ("sha512", "")])
@pytest.mark.parametrize("form", [(), ("-nodetach",)], ids=["multipart", "opaque"])
def test_the_signers_hash_is_read(pki: Pki, md: str, weak: str, form: tuple[str, ...]) -> None:
    assert smime_digest.weak_hash(der(pki, "-md", md, *form)) == weak


def test_rsa_pss_is_judged_by_its_hash(pki: Pki) -> None:
    pss = ("-keyopt", "rsa_padding_mode:pss")
    assert smime_digest.weak_hash(der(pki, "-md", "sha256", *pss)) == ""
    assert smime_digest.weak_hash(der(pki, "-md", "sha1", *pss)) == "SHA-1"


@pytest.mark.parametrize("form", [(), ("-nodetach",)], ids=["multipart", "opaque"])
def test_a_sha1_signature_is_held_and_nothing_is_read(pki: Pki, identity: Identity,
                                                      form: tuple[str, ...]) -> None:
    now = dt.datetime.now(dt.UTC)
    opened = unwrap(outer(signed(pki, "-md", "sha1", *form), DOC), identity, now)
    assert (opened.problem_code, opened.problem, opened.raw) == (
        "smime-weak-hash", "the signature uses SHA-1, a hash too weak to trust", b"")
    good = unwrap(outer(signed(pki, *form), DOC), identity, now)  # openssl's default, SHA-256
    assert good.problem_code == "" and b"Jane Testpatient" in good.raw


def test_a_sha1_signature_inside_encryption_is_held(pki: Pki, identity: Identity) -> None:
    sent = pki.encrypt(signed(pki, "-md", "sha1"), pki.mailflow_cert, "aes-256-cbc", DOC)
    opened = unwrap(sent, identity, dt.datetime.now(dt.UTC))
    assert opened.problem_code == "smime-weak-hash" and "SHA-1" in opened.problem
    assert opened.layers == ("encrypted",) and not opened.raw


def damaged(pki: Pki) -> dict[str, bytes]:
    good = der(pki)
    assert SHA256_OID in good
    unsigned = cms.ContentInfo.load(good)
    unsigned["content"]["signer_infos"] = cms.SignerInfos([])
    enveloped = openssl_cms.encrypt_gcm(INNER, [pki.mailflow_cert.read_bytes()])
    return {"empty": b"", "not DER": b"Patient name: Jane", "cut short": good[: len(good) // 2],
            "trailing bytes": good + b"\x00\x00", "not signed data": enveloped,
            "a hash that is no OID": good.replace(SHA256_OID, b"\x05\x09" + b"\x00" * 9),
            "no signer": unsigned.dump(force=True)}


def test_a_damaged_structure_is_held_never_passed(pki: Pki) -> None:
    for name, data in damaged(pki).items():
        with pytest.raises(CmsFailure) as failure:
            smime_digest.check(data)
        assert failure.value.code == "smime-unreadable", name
        assert "structure cannot be read" in str(failure.value), name


def test_openssl_reading_no_signature_is_held() -> None:
    with pytest.raises(CmsFailure) as failure:
        openssl_cms.structure(b"Content-Type: text/plain\r\n\r\nhello\r\n")
    assert failure.value.code == "smime-unreadable"
