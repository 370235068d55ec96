"""DKIM (RFC 6376): the signing key `mailflow init` makes, its DNS record, and the signature.

dkimpy signs; the key is made here with `cryptography` and written as a PKCS#1 PEM, the form
dkimpy (and OpenDKIM) read. Receivers find the public key in DNS at
<selector>._domainkey.<domain>: `mailflow dkim dns` prints that record.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailflow.crypto.keys import KeyError_

TXT_STRING_MAX = 255  # one character-string in a DNS TXT record (RFC 1035 §3.3)


class DkimKeyError(KeyError_):
    """The DKIM key is missing or unreadable: no mail may leave unsigned."""


def create_key(path: Path, bits: int) -> bool:
    """Make an RSA key at `path` (0600, folder 0700) unless one is there. True when made."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def load_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        stat = path.stat()
        return _load_key(path, (stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except FileNotFoundError:
        raise DkimKeyError(f"no DKIM signing key at {path}: run `mailflow init` to make one "
                           "(or set [dkim] enabled = false)") from None
    except OSError as exc:
        raise DkimKeyError(f"the DKIM signing key {path} cannot be read: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _load_key(path: Path, version: tuple[int, int, int]) -> rsa.RSAPrivateKey:
    """Parsed once per file version: checking an RSA key as it loads takes tens of
    milliseconds, and every App.open (each command, each process) loads it."""
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"{path} is not a PEM private key without a passphrase") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise DkimKeyError(f"{path} is not an RSA key of 2048 bits or more")
    return key


@dataclass(frozen=True)
class DnsRecord:
    name: str  # <selector>._domainkey.<domain>
    value: str  # v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>

    @property
    def strings(self) -> list[str]:
        """The value cut into TXT character-strings of at most 255 (receivers join them)."""
        return [self.value[i:i + TXT_STRING_MAX]
                for i in range(0, len(self.value), TXT_STRING_MAX)]

    @property
    def zone_line(self) -> str:
        quoted = " ".join(f'"{s}"' for s in self.strings)
        return f"{self.name}. IN TXT ( {quoted} )"


def dns_record(key: rsa.RSAPrivateKey, selector: str, domain: str) -> DnsRecord:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return DnsRecord(name=f"{selector}._domainkey.{domain}",
                     value=f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")


@dataclass(frozen=True)
class Signer:
    """Signs a finished message (CRLF line ends) as `domain`, which is From:'s domain."""

    domain: str
    selector: str
    key_pem: bytes  # PKCS#1, as dkimpy reads it
    headers: tuple[str, ...]

    @classmethod
    def load(cls, path: Path, domain: str, selector: str, headers: Sequence[str]) -> Signer:
        pem = load_key(path).private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption())
        return cls(domain, selector, pem, tuple(headers))

    def sign(self, raw: bytes) -> bytes:
        """The message with its DKIM-Signature header first. relaxed/relaxed: a relay that
        re-folds a header or trims trailing spaces keeps the signature good."""
        header = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.key_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.lower().encode() for h in self.headers],
            linesep=b"\r\n",
        )
        return header + raw
