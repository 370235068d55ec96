"""S/MIME for tests: a CA made for the test that issues mailflow's and providers' certificates,
and `openssl cms` as the independent peer (it signs and encrypts what mailflow receives, and
decrypts and verifies what mailflow sends). Every command run is kept in `Pki.log`, so a
failing test (or the closing note) shows exactly what checked what."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from mailflow.crypto.smime_certs import Identity
from tests.support.tls_ca import TestCA, issue_smime

MAILFLOW = "cases@derm.localhost"
DOC = "doc@clinic.test"  # the provider whose certificate doc_pki issues
INNER = b"Content-Type: text/plain; charset=utf-8\r\n\r\nPatient name: Jane Testpatient\r\n"


@dataclass
class Pki:
    folder: Path
    ca: TestCA = field(default_factory=TestCA)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.anchors = self.write("anchors.pem", self.ca.cert_pem)
        self.mailflow_cert, self.mailflow_key = self.issue("mailflow", MAILFLOW)

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def issue(self, name: str, email: str, ca: TestCA | None = None,
              **kw: int) -> tuple[Path, Path]:
        cert, key = issue_smime(ca or self.ca, email, **kw)
        return self.write(f"{name}.pem", cert), self.write(f"{name}.key", key)

    def smime_config(self, encryption: str) -> dict[str, object]:
        return {"enabled": True, "key_file": str(self.mailflow_key),
                "cert_file": str(self.mailflow_cert), "trust_anchors": str(self.anchors),
                "encryption": encryption}

    def cms(self, *args: str, data: bytes, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        """`openssl cms ARGS` with `data` on stdin; logged as it was run."""
        argv = ["openssl", "cms", *args]
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
        self.log.append(f"$ {shlex.join(argv)}\n{done.stderr.decode().strip()} (exit "
                        f"{done.returncode})")
        if ok:
            assert done.returncode == 0, done.stderr.decode()
        return done

    def sign(self, entity: bytes, cert: Path, key: Path, *options: str) -> bytes:
        """openssl's multipart/signed (SHA-256 unless `options` say otherwise: "-md", "sha1";
        "-nodetach" for opaque signed-data)."""
        return self.cms("-sign", "-signer", str(cert), "-inkey", str(key), *options,
                        data=entity).stdout

    def encrypt(self, signed: bytes, to: Path, cipher: str, sender: str,
                subject: str = "New consult") -> bytes:
        return self.cms("-encrypt", f"-{cipher}", "-from", sender, "-to", MAILFLOW,
                        "-subject", subject, str(to), data=signed).stdout

    def decrypt_and_verify(self, raw: bytes, cert: Path, key: Path) -> bytes:
        """What a provider's mail client does: decrypt with their key, verify the signature
        chains to the CA and names mailflow's address; the content as signed."""
        opened = self.cms("-decrypt", "-recip", str(cert), "-inkey", str(key), data=raw).stdout
        return self.cms("-verify", "-CAfile", str(self.anchors), "-purpose", "smimesign",
                        "-verify_email", MAILFLOW, data=opened).stdout


def entity(msg: EmailMessage) -> bytes:
    """The message's MIME entity (its content headers over its body), what a client signs."""
    raw = msg.as_bytes(policy=SMTP)
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    content = [f for f in fields if f.lower().startswith(b"content-")]
    return b"\r\n".join(content) + b"\r\n\r\n" + body


def outer(signed: bytes, sender: str, subject: str = "New consult") -> bytes:
    """A signed-only message: openssl's multipart/signed with From, To and Subject on top."""
    return (f"From: {sender}\r\nTo: {MAILFLOW}\r\nSubject: {subject}\r\n".encode()
            + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def doc_pki(folder: Path) -> Pki:
    """A CA, mailflow's certificate and DOC's (doc.pem, doc.key)."""
    pki = Pki(folder)
    pki.issue("doc", DOC)
    return pki


def mailflow_identity(pki: Pki, encryption: str = "aes-256-cbc") -> Identity:
    return Identity.load(pki.mailflow_key, pki.mailflow_cert, pki.anchors, encryption)
