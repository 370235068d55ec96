"""Outbound S/MIME (RFC 8551): sign with mailflow's key, then encrypt to the recipient.

`cryptography` signs (SHA-256, a detached multipart/signed that any client shows) and
encrypts with AES-256-CBC (EnvelopedData); AES-256-GCM (AuthEnvelopedData, RFC 5083), which
`cryptography` does not write, goes through `openssl cms` (crypto/openssl_cms.py). The message
is also encrypted to mailflow's own certificate, so the stored copy of what was sent can be
read back by whoever holds mailflow's key."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from mailflow.crypto import openssl_cms
from mailflow.crypto.smime import split_content
from mailflow.crypto.smime_certs import Identity, load_one

ENCRYPTIONS = ("aes-256-gcm", "aes-256-cbc")


def sign(entity: bytes, identity: Identity) -> bytes:
    """`entity` (a MIME entity, CRLF line ends) as multipart/signed by mailflow."""
    return (pkcs7.PKCS7SignatureBuilder()
            .set_data(entity)
            .add_signer(identity.cert, identity.key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))


def encrypt(entity: bytes, identity: Identity, recipients: Sequence[bytes]) -> bytes:
    """The application/pkcs7-mime entity that carries `entity` encrypted to each recipient's
    certificate (PEM) and to mailflow's own."""
    certs = [load_one(pem) for pem in recipients] + [identity.cert]
    if identity.encryption == "aes-256-gcm":
        pems = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
        der, smime_type = openssl_cms.encrypt_gcm(entity, pems), "authEnveloped-data"
    else:
        builder = pkcs7.PKCS7EnvelopeBuilder().set_data(entity)
        for cert in certs:
            builder = builder.add_recipient(cert)
        der = (builder.set_content_encryption_algorithm(algorithms.AES256)
               .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
        smime_type = "enveloped-data"
    return _pkcs7_mime(der, smime_type)


def _pkcs7_mime(der: bytes, smime_type: str) -> bytes:
    """The part as RFC 8551 3.2.2 writes it (unquoted smime-type: some clients match it
    literally), base64 in 76-character lines."""
    body = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return (b"MIME-Version: 1.0\r\n"
            b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode()
            + b'; name="smime.p7m"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + body)


def protect(entity: bytes, identity: Identity, recipients: Sequence[bytes]) -> bytes:
    """Signed, then encrypted: the signature (and who signed) is inside, hidden too."""
    return encrypt(sign(entity, identity), identity, recipients)


def protect_message(raw: bytes, identity: Identity, recipients: Sequence[bytes]) -> bytes:
    """A whole message (CRLF) with its content signed and encrypted: its own headers (From,
    To, Subject... which carry no PHI) over the application/pkcs7-mime part."""
    kept, entity = split_content(raw)
    return kept + protect(entity, identity, recipients)
