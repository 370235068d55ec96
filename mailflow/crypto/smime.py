"""Inbound S/MIME (RFC 8551; Direct): open the layers of a message before it is parsed.

Encrypted layers (application/pkcs7-mime enveloped-data or authEnveloped-data) are decrypted
with mailflow's key; signed layers (multipart/signed, or pkcs7-mime signed-data) are verified:
the chain to the configured trust anchors, for email signing, a hash other than MD5 or SHA-1
(smime_digest), and the signer's certificate names From:. What is left is the message as its
sender wrote it: the outer headers (From, To, Subject...) over the innermost entity, for the
parser as any other message.

Any failure is an answer (`Unwrapped.problem`), never an exception and never content: a
message that fails is held for an admin with that reason, and nothing in it is parsed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import default as default_policy
from email.utils import getaddresses

from cryptography.hazmat.primitives.serialization import pkcs7

from mailflow.crypto import openssl_cms, smime_digest
from mailflow.crypto.openssl_cms import CmsFailure
from mailflow.crypto.smime_certs import CertFacts, CertificateError, Identity, facts, load_one

MAX_LAYERS = 4  # signed inside encrypted inside signed is already unusual
PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")
# the DER of the content-type OIDs (ContentInfo's first field)
_ENVELOPED = bytes.fromhex("06092a864886f70d010703")  # 1.2.840.113549.1.7.3
_AUTH_ENVELOPED = bytes.fromhex("060b2a864886f70d0109100117")  # 1.2.840.113549.1.9.16.1.23
_SIGNED = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2
_CONTENT_HEADER = re.compile(rb"^(content-|mime-version\s*:)", re.IGNORECASE)
# a header field's first line (RFC 5322 2.2: printable name, colon); any other line ends the
# headers for the parser, so one copied into the opened message would start its body
_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")


@dataclass(frozen=True)
class Unwrapped:
    raw: bytes  # the message to parse; b"" when a check failed
    layers: tuple[str, ...] = ()  # "encrypted" / "signed", outermost first
    signer: CertFacts | None = None
    signed_as: str = ""  # the From: address the signer's certificate was found to name
    problem_code: str = ""  # smime-bad-signature, smime-untrusted, smime-weak-hash, ...
    problem: str = ""  # for the admin: what failed, in plain words, no message content

    @property
    def summary(self) -> str:
        """What the case page shows: 'S/MIME signed by a@b (Issuer CN), encrypted'."""
        if not self.layers:
            return ""
        words = []
        if self.signer is not None:
            who = self.signed_as or ", ".join(self.signer.emails) or self.signer.subject
            words.append(f"S/MIME signed by {who} ({self.signer.issuer_cn})")
        if "encrypted" in self.layers:
            words.append("encrypted" if words else "S/MIME encrypted, not signed")
        return ", ".join(words)


def is_smime(raw: bytes) -> bool:
    """Does the message's own Content-Type say S/MIME (cheap: the header block only)?"""
    return _kind(_headers(raw)) is not None


def unwrap(raw: bytes, identity: Identity, at: datetime) -> Unwrapped:
    """Open every S/MIME layer of `raw`; a message without any comes back as it is.

    Bad input is an answer, never an exception: only a missing or hung `openssl` raises (the
    worker retries, then quarantines), since that is the machine's fault, not the sender's."""
    try:
        return _unwrap(raw, identity, at)
    except (RuntimeError, subprocess.TimeoutExpired):
        raise
    except Exception as exc:  # a structure no check above foresaw: held, with its kind
        return Unwrapped(b"", problem_code="smime-unreadable",
                         problem=f"its S/MIME structure cannot be read ({type(exc).__name__})")


def _unwrap(raw: bytes, identity: Identity, at: datetime) -> Unwrapped:
    outer = _headers(raw)
    kept, entity = split_content(raw)
    layers: list[str] = []
    signer: CertFacts | None = None
    headers: Message = outer
    try:
        for _ in range(MAX_LAYERS + 1):
            kind = _kind(headers)
            if kind is None:
                break
            if len(layers) == MAX_LAYERS:
                raise CmsFailure("smime-unreadable", f"more than {MAX_LAYERS} S/MIME layers")
            der = _payload(entity) if kind == "encrypted" else b""
            if _SIGNED in der[:32]:  # pkcs7-mime without smime-type: its DER says signed
                kind = "signed"
            if kind == "encrypted":
                entity = _decrypt(der, identity)
            else:
                verified = openssl_cms.verify(entity, identity.anchors_path, at)
                smime_digest.check(openssl_cms.structure(entity))  # MD5, SHA-1: refused
                signer = signer or _signer(verified.signer_pem)
                entity = verified.content
            layers.append(kind)
            entity = _crlf(entity)
            headers = _headers(entity)
    except CmsFailure as failure:
        return Unwrapped(b"", tuple(layers), signer, problem_code=failure.code,
                         problem=str(failure))
    sender = _from(outer)
    if signer is not None and sender not in signer.emails:
        return Unwrapped(b"", tuple(layers), signer, problem_code="smime-signer-mismatch",
                         problem=f"the message was signed by "
                         f"{', '.join(signer.emails) or 'nobody'} but is from "
                         f"{sender or 'no address'}")
    if not layers:
        return Unwrapped(raw)
    # From, To, Subject are the outer message's (From: is what the signer was checked
    # against); copies a client put on the inner entity are dropped, not doubled
    _, content = split_content(entity)
    return Unwrapped(kept + b"MIME-Version: 1.0\r\n" + content, tuple(layers), signer,
                     signed_as=sender if signer is not None else "")


def split_content(raw: bytes) -> tuple[bytes, bytes]:
    """A message's headers but its content ones (From, To, Subject...), and its MIME entity
    (the content headers over the body): what S/MIME wraps and unwraps (RFC 8551 3.1)."""
    head, body = _split(raw)
    fields = _fields(head)
    kept = b"".join(f for f in fields if not _CONTENT_HEADER.match(f))
    content = b"".join(f for f in fields
                       if _CONTENT_HEADER.match(f) and not f.lower().startswith(b"mime-version"))
    return kept, content + b"\r\n" + body


def headers_only(raw: bytes) -> bytes:
    """The message's headers without its body and content headers: who, to whom, about what,
    for a message whose S/MIME check failed (nothing it carries is read)."""
    head, _ = _split(raw)
    return b"".join(f for f in _fields(head) if not _CONTENT_HEADER.match(f)) + b"\r\n"


def _decrypt(der: bytes, identity: Identity) -> bytes:
    start = der[:32]
    if _AUTH_ENVELOPED in start:  # AES-GCM: cryptography has no AuthEnvelopedData
        return openssl_cms.decrypt(der, identity.key_path, identity.cert_path)
    if _ENVELOPED not in start:
        raise CmsFailure("smime-unreadable", "the encrypted part is not CMS enveloped data")
    try:
        return pkcs7.pkcs7_decrypt_der(der, identity.cert, identity.key, [])
    except ValueError as exc:
        if "no recipient" in str(exc).lower():
            raise CmsFailure("smime-not-for-us", "it was encrypted for someone else, not to "
                             "mailflow's certificate") from None
        raise CmsFailure("smime-unreadable", f"it could not be decrypted ({exc})") from None
    except Exception as exc:  # an algorithm cryptography does not know, a broken structure
        raise CmsFailure("smime-unreadable",
                         f"it could not be decrypted ({type(exc).__name__})") from None


def _signer(pem: bytes) -> CertFacts:
    try:
        return facts(load_one(pem))
    except CertificateError as exc:
        raise CmsFailure("smime-unreadable", f"the signer's certificate: {exc}") from None


def _kind(headers: Message) -> str | None:
    ctype = headers.get_content_type()
    if ctype == "multipart/signed":
        protocol = str(headers.get_param("protocol", "") or "").lower()
        return "signed" if protocol in PKCS7_SIGNATURE else None
    if ctype in PKCS7_MIME:
        smime_type = str(headers.get_param("smime-type", "") or "").lower()
        if smime_type in ("signed-data", "certs-only"):
            return "signed"
        return "encrypted" if smime_type != "compressed-data" else None
    return None


def _payload(entity: bytes) -> bytes:
    """The DER inside a pkcs7-mime entity (base64, or binary)."""
    part = BytesParser(policy=default_policy).parsebytes(entity)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        raise CmsFailure("smime-unreadable", "the S/MIME part is empty")
    return data


def _headers(raw: bytes) -> Message:
    head, _ = _split(raw)
    return BytesHeaderParser(policy=default_policy).parsebytes(head + b"\r\n")


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """The header block (ending in one line end) and the body."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw + b"\r\n", b""
    return raw[:match.start()] + b"\r\n", raw[match.end():]


def _fields(head: bytes) -> list[bytes]:
    """Header fields, each with its folded lines; lines that are neither are dropped."""
    fields: list[bytes] = []
    for line in _crlf(head).splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif _FIELD.match(line):
            fields.append(line)
    return fields


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def _from(headers: Message) -> str:
    found = getaddresses([str(v) for v in headers.get_all("From", [])])
    addr = found[0][1] if found else ""
    try:
        return str(Address(addr_spec=addr).addr_spec).lower() if addr else ""
    except Exception:  # an address the header registry refuses: compared as written
        return addr.strip().lower()
