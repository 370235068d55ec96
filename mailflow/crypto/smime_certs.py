"""S/MIME certificates: what one says (whose address, who issued it, until when) and mailflow's
own key and certificate, loaded once (`[smime]`).

`cryptography` reads the certificates; nothing here decides whom to trust (that is the chain
to the configured anchors, crypto/openssl_cms.py, and the admin's approval, workflow/)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailflow.crypto.keys import KeyError_


class CertificateError(ValueError):
    """Not a certificate mailflow can use for S/MIME; the message says why, in plain words."""


class SmimeKeyError(KeyError_):
    """mailflow's own S/MIME key or certificate is missing or unusable: start-up stops."""


@dataclass(frozen=True)
class CertFacts:
    fingerprint: str  # SHA-256 of the DER, hex: how an admin names it
    emails: tuple[str, ...]  # rfc822Name SANs and the subject's emailAddress, lower case
    subject: str
    issuer_cn: str
    not_before: datetime
    not_after: datetime
    pem: str = field(repr=False)

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def load_one(data: bytes) -> x509.Certificate:
    """One certificate, PEM or DER (the first one of a PEM bundle)."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CertificateError("the file is not a certificate (PEM or DER)") from None


def facts(cert: x509.Certificate) -> CertFacts:
    emails: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails += san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        pass
    emails += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertFacts(
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        emails=tuple(dict.fromkeys(e.strip().lower() for e in emails if e.strip())),
        subject=cert.subject.rfc4514_string(),
        issuer_cn=str(issuer[0].value) if issuer else cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )


def usable_for(cert: x509.Certificate, email: str) -> CertFacts:
    """The facts of a certificate a provider offers for `email`, or why it cannot be used:
    mail is encrypted to it, so it must name the address, allow email protection and carry an
    RSA key (CMS key transport, what Direct uses)."""
    found = facts(cert)
    if email.strip().lower() not in found.emails:
        named = ", ".join(found.emails) or "no email address"
        raise CertificateError(f"the certificate is for {named}, not {email}")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku:
            raise CertificateError("the certificate is not for email protection")
    except x509.ExtensionNotFound:
        pass  # no EKU: any use (RFC 5280 4.2.1.12)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise CertificateError("the certificate's key is not RSA; mail cannot be encrypted to it")
    return found


@dataclass(frozen=True)
class Identity:
    """mailflow's S/MIME key and certificate, and the anchors a sender's chain must reach."""

    key_path: Path
    cert_path: Path
    anchors_path: Path
    encryption: str  # "aes-256-gcm" | "aes-256-cbc"
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    @property
    def cert(self) -> x509.Certificate:
        return _cert(self.cert_pem)

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return _key(self.key_pem)

    @classmethod
    def load(cls, key_path: Path, cert_path: Path, anchors_path: Path,
             encryption: str) -> Identity:
        try:
            key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
            if not anchors_path.is_file():
                raise SmimeKeyError(f"no S/MIME trust anchors at {anchors_path}")
        except OSError as exc:
            raise SmimeKeyError(f"the S/MIME key or certificate cannot be read: {exc}") from exc
        try:
            key, cert = _key(key_pem), _cert(cert_pem)
        except (ValueError, TypeError) as exc:
            raise SmimeKeyError(f"{key_path} / {cert_path}: not an RSA key without a "
                                f"passphrase and its certificate ({exc})") from exc
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise SmimeKeyError(f"{cert_path} is not the certificate of the key {key_path}")
        return cls(key_path, cert_path, anchors_path, encryption, cert_pem, key_pem)


@functools.lru_cache(maxsize=4)
def _key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the S/MIME key must be RSA")
    return key


@functools.lru_cache(maxsize=4)
def _cert(pem: bytes) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise TypeError("the S/MIME certificate's key must be RSA")
    return cert
