"""A small wrapper over `openssl cms` for what `cryptography` cannot do: verify a signature
(the chain to the trust anchors, the purpose, the time) and AES-GCM (AuthEnvelopedData,
RFC 5083). docs/decisions.md says why.

The message goes through stdin and stdout, never a file: it is PHI. Only certificates (public)
are written, in a private temporary folder. The private key is read from its configured file.
openssl's answer is classified into a few failures an admin can read; its own words (no
message content) follow the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

OPENSSL = os.environ.get("MAILFLOW_OPENSSL", "openssl")
TIMEOUT_SECONDS = 60  # a 40 MB message verifies in well under a second
# openssl checks no key size or certificate signature hash unless told: level 2 (112 bits)
# refuses RSA under 2048 bits and SHA-1/MD5-signed certificates in the chain (Direct's floor)
AUTH_LEVEL = "2"


class CmsFailure(Exception):
    """The message failed a check; `code` for the admin's list, str() in plain words."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Verified:
    content: bytes  # the signed MIME entity, as signed
    signer_pem: bytes  # the signer's certificate


# openssl's words -> (code, plain reason); the first that appears decides
_VERIFY_ERRORS = (
    ("too weak", "smime-untrusted",
     "the signer's certificate uses a key or hash too weak to trust"),
    ("certificate has expired", "smime-expired", "the signer's certificate has expired"),
    ("certificate is not yet valid", "smime-expired", "the signer's certificate is not valid yet"),
    ("certificate revoked", "smime-untrusted", "the signer's certificate is revoked"),
    ("certificate purpose", "smime-untrusted",  # 1.1: unsupported, 3: unsuitable
     "the signer's certificate is not for signing email"),
    ("certificate verify error", "smime-untrusted",
     "the signer's certificate does not chain to a trusted authority"),
    ("content verify error", "smime-bad-signature",
     "the signature does not match the message: it was changed after signing"),
    ("verification failure", "smime-bad-signature", "the signature is not valid"),
    ("signer certificate not found", "smime-bad-signature",
     "the message does not carry its signer's certificate"),
)


def available() -> bool:
    """Is the openssl command there? Checked at start-up when S/MIME is on."""
    return shutil.which(OPENSSL) is not None


def _run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([OPENSSL, "cms", *args], input=data, capture_output=True,
                              timeout=TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{OPENSSL} is not installed: S/MIME needs it") from None


def _said(stderr: bytes) -> str:
    """openssl's reason (its last error line's last field), without file names or addresses."""
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    last = lines[-1] if lines else "no reason given"
    fields = [f for f in last.split(":") if f.strip() and not f.strip().startswith("../")]
    return (fields[-1] if fields else last).strip()[:200]


def verify(entity: bytes, anchors: Path, at: datetime) -> Verified:
    """Check a signed MIME entity (multipart/signed or signed-data) chains to `anchors` for
    email signing at `at`; the content as signed, and the signer's certificate."""
    with tempfile.TemporaryDirectory(prefix="mailflow-cms-") as folder:
        signer = Path(folder) / "signer.pem"
        # -no-CApath/-no-CAstore: the configured anchors only, never the system's public CAs
        done = _run(["-verify", "-inform", "SMIME", "-CAfile", str(anchors), "-no-CApath",
                     "-no-CAstore", "-auth_level", AUTH_LEVEL,
                     "-purpose", "smimesign", "-attime", str(int(at.timestamp())),
                     "-signer", str(signer)], entity)
        if done.returncode == 0 and signer.exists():
            return Verified(done.stdout, signer.read_bytes())
    said = done.stderr.decode("utf-8", "replace").lower()
    if "error reading" in said or "no content type" in said or "asn1" in said:
        raise CmsFailure("smime-unreadable",
                         f"the signed message cannot be read ({_said(done.stderr)})")
    for words, code, reason in _VERIFY_ERRORS:
        if words in said:
            return _fail(code, reason, done.stderr)
    return _fail("smime-bad-signature", "the signature could not be verified", done.stderr)


def structure(entity: bytes) -> bytes:
    """The CMS SignedData of a signed MIME entity, DER, as openssl's own MIME reader finds it:
    the signature -verify checked, not one a second parser might find in the same entity."""
    done = _run(["-cmsout", "-inform", "SMIME", "-outform", "DER"], entity)
    if done.returncode != 0 or not done.stdout:
        raise CmsFailure("smime-unreadable",
                         f"the signature's structure cannot be read ({_said(done.stderr)})")
    return done.stdout


def _fail(code: str, reason: str, stderr: bytes) -> Verified:
    raise CmsFailure(code, f"{reason} (openssl: {_said(stderr)})")


def decrypt(der: bytes, key_path: Path, cert_path: Path) -> bytes:
    """Open AuthEnvelopedData (or EnvelopedData) addressed to mailflow's certificate. -recip
    matches the recipient by issuer and serial: never a trial of every recipient, whose
    failure would give random bytes instead of an error (openssl's MMA defence)."""
    done = _run(["-decrypt", "-inform", "DER", "-recip", str(cert_path),
                 "-inkey", str(key_path)], der)
    if done.returncode != 0:
        raise CmsFailure("smime-not-for-us",
                         "it could not be decrypted with mailflow's key: it was encrypted for "
                         f"someone else, or damaged (openssl: {_said(done.stderr)})")
    return done.stdout


def encrypt_gcm(content: bytes, recipients: list[bytes]) -> bytes:
    """AuthEnvelopedData with AES-256-GCM (RFC 8551 2.7), DER, to each certificate (PEM)."""
    with tempfile.TemporaryDirectory(prefix="mailflow-cms-") as folder:
        paths = []
        for n, pem in enumerate(recipients):
            path = Path(folder) / f"recipient{n}.pem"
            path.write_bytes(pem)
            paths.append(str(path))
        done = _run(["-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", *paths], content)
    if done.returncode != 0:
        raise RuntimeError(f"openssl cms could not encrypt: {_said(done.stderr)}")
    return done.stdout


def check_chain(cert_pem: bytes, anchors: Path, at: datetime) -> None:
    """A certificate mail will be encrypted to chains to `anchors`, for email, at `at`."""
    try:
        done = subprocess.run([OPENSSL, "verify", "-CAfile", str(anchors), "-no-CApath",
                               "-no-CAstore", "-auth_level", AUTH_LEVEL, "-purpose",
                               "smimeencrypt", "-attime", str(int(at.timestamp()))],
                              input=cert_pem, capture_output=True, timeout=TIMEOUT_SECONDS,
                              check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{OPENSSL} is not installed: S/MIME needs it") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode("utf-8", "replace")
        why = [ln.split("lookup:", 1)[1].strip() for ln in said.splitlines() if "lookup:" in ln]
        expired = "expired" in said or "not yet valid" in said
        code = "smime-expired" if expired else "smime-untrusted"
        what = ("the certificate has expired or is not valid yet" if expired
                else "its key or hash is too weak" if "too weak" in said
                else "the certificate does not chain to a trusted authority")
        raise CmsFailure(code, f"{what} (openssl: {(why or ['verification failed'])[0]})")
