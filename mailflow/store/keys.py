"""The master key under var/keys and the purpose keys derived from it (HKDF).

One random 256-bit master key, created by `mailflow init`; each use (blobs, database columns,
look-up hashes, reply addresses) gets its own derived key so that no two uses share one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyError_(Exception):
    """The key is missing or unreadable: the service cannot read PHI without it."""


def key_path(storage_dir: Path) -> Path:
    return storage_dir / "keys" / "master.key"


def create_master_key(storage_dir: Path) -> bool:
    """Create the master key if absent (mode 0600). Returns True when a key was created."""
    path = key_path(storage_dir)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(master)


@dataclass(frozen=True)
class Keyring:
    blob_key: bytes
    blob_name_key: bytes
    column_key: bytes
    lookup_key: bytes
    reply_key: bytes
    token_key: bytes

    @classmethod
    def from_master(cls, master: bytes) -> Keyring:
        return cls(
            blob_key=_derive(master, "mailflow blobs v1"),
            blob_name_key=_derive(master, "mailflow blob names v1"),
            column_key=_derive(master, "mailflow columns v1"),
            lookup_key=_derive(master, "mailflow lookup v1"),
            reply_key=_derive(master, "mailflow reply addresses v1"),
            token_key=_derive(master, "mailflow password links v1"),
        )

    @classmethod
    def load(cls, storage_dir: Path) -> Keyring:
        path = key_path(storage_dir)
        try:
            master = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError as exc:
            raise KeyError_(f"no key at {path}: run `mailflow init` first") from exc
        except ValueError as exc:
            raise KeyError_(f"the key at {path} is not readable") from exc
        if len(master) != KEY_BYTES:
            raise KeyError_(f"the key at {path} has the wrong length")
        return cls.from_master(master)

    def lookup_hash(self, *parts: str) -> str:
        """A keyed hash for finding a row by a PHI value without storing the value in clear."""
        msg = "\x1f".join(p.strip().lower() for p in parts).encode()
        return hmac.new(self.lookup_key, msg, hashlib.sha256).hexdigest()


def seal(key: bytes, plaintext: bytes, associated: bytes = b"") -> bytes:
    """AES-256-GCM: nonce || ciphertext+tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated or None)


def unseal(key: bytes, sealed: bytes, associated: bytes = b"") -> bytes:
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    return AESGCM(key).decrypt(nonce, body, associated or None)
