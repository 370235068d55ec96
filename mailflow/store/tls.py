"""TLS: the self-signed certificate `mailflow init` creates for STARTTLS on a first run, the
door's server context and the client context for servers mailflow connects to (the relay)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_DAYS = 825
# The door's TLS 1.2 suites: forward secrecy (ECDHE) with authenticated encryption (AES-GCM,
# ChaCha20-Poly1305) only, Mozilla's "intermediate" profile; CBC and static-RSA suites are
# out. TLS 1.3's suites are all of that kind (they are not set by this list).
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def tls_paths(storage_dir: Path) -> tuple[Path, Path]:
    return storage_dir / "tls" / "cert.pem", storage_dir / "tls" / "key.pem"


def self_signed(hostname: str, days: int = CERT_DAYS) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) for `hostname`, localhost and 127.0.0.1, and its key
    (PEM, PKCS#8). Its extensions are those strict verifiers (Python 3.13's default context)
    insist on, so a client can pin it as its own trust anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_pair(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """The key readable by its owner only (created so, never widened), then the certificate."""
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert_pem)


def create_self_signed(storage_dir: Path, hostname: str) -> bool:
    cert_path, key_path = tls_paths(storage_dir)
    if cert_path.exists() and key_path.exists():
        return False
    write_pair(cert_path, key_path, *self_signed(hostname))
    return True


def server_context(storage_dir: Path) -> ssl.SSLContext:
    cert_path, key_path = tls_paths(storage_dir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SERVER_CIPHERS)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_context(ca_file: Path | None = None, verify: bool = True) -> ssl.SSLContext:
    """TLS 1.2 or later to a server whose certificate chains to `ca_file` (else to the
    system's CAs) and names the host connected to; `verify=False` checks neither (an
    explicit choice in the configuration, never a fallback). A CA file that cannot be read
    raises OSError (ssl.SSLError is one)."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
