"""The master keys under var/keys and the purpose keys derived from them (HKDF).

A random 256-bit master key, created by `mailflow init`; each use (blobs, database columns,
look-up hashes, reply addresses) gets its own derived key so that no two uses share one.
`mailflow keys rotate` adds newer master keys for the encryption keys (crypto/keyset.py).

The first master key may instead come from the environment (MAILFLOW_MASTER_KEY, base64 or
hex), so a secret manager can provide it and a machine keeps no key on its disk; it then
stands where var/keys/master.key would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from mailflow.crypto.keyset import KeySet

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyError_(Exception):
    """The key is missing or unreadable: the service cannot read PHI without it."""


MASTER_KEY_ENV = "MAILFLOW_MASTER_KEY"


def env_master() -> bytes | None:
    """The master key in MAILFLOW_MASTER_KEY (32 bytes, base64 or hex), if it is set."""
    value = os.environ.get(MASTER_KEY_ENV, "").strip()
    if not value:
        return None
    try:
        master = bytes.fromhex(value) if len(value) == 2 * KEY_BYTES else base64.b64decode(
            value, validate=True)
    except ValueError as exc:
        raise KeyError_(f"{MASTER_KEY_ENV} is neither base64 nor hex") from exc
    if len(master) != KEY_BYTES:
        raise KeyError_(f"{MASTER_KEY_ENV} holds {len(master)} bytes, not {KEY_BYTES}")
    return master


def env_master_agreeing(folder: Path) -> bytes | None:
    """MAILFLOW_MASTER_KEY, refused when a master.key on disk holds another key: data sealed
    under one would be unreadable under the other (a command run without the variable, e.g.
    under sudo, makes a fresh master.key), and blob names and patient look-ups would differ."""
    master = env_master()
    if master is None:
        return None
    from mailflow.crypto.keyset import read_master  # keyset builds on this module

    for candidate in (folder / "master.key", folder / "retired" / "master.key"):
        if candidate.exists() and read_master(candidate) != master:
            raise KeyError_(
                f"{MASTER_KEY_ENV} and {candidate} hold different keys; keep the one the data "
                "was sealed with and remove the other")
    return master


IDENTITY_NAME = "identity.key"
# The keys that name things rather than hide them: blob names, patient look-up hashes, the
# reply addresses in providers' inboxes, password links. They are not rotated (a rotation
# would rename every blob and break every address already sent), so after the first rotation
# they are kept in identity.key, apart from the master key they came from, which can then go.
IDENTITY_PURPOSES = {
    "blob_name_key": "mailflow blob names v1",
    "lookup_key": "mailflow lookup v1",
    "reply_key": "mailflow reply addresses v1",
    "token_key": "mailflow password links v1",
}


def keys_dir(storage_dir: Path) -> Path:
    return storage_dir / "keys"


def key_path(storage_dir: Path) -> Path:
    """The first master key (`mailflow init`); later ones are key-<n>.key (crypto/keyset.py)."""
    return keys_dir(storage_dir) / "master.key"


def create_master_key(storage_dir: Path) -> bool:
    """Create the master key in an installation that has no key (mode 0600). Returns True
    when a key was created. A folder with any key (a rotated one, a retired one) is left as
    it is: a new master.key there would be a second, unrelated key."""
    path = key_path(storage_dir)
    folder = path.parent
    from mailflow.crypto.keyset import key_generation

    if env_master() is not None:  # the key is the environment's: none on this disk
        return False
    if folder.is_dir() and any(
        p.name == IDENTITY_NAME or key_generation(p.name) is not None for p in folder.rglob("*")
    ):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(master)


def identity_from_master(master: bytes) -> dict[str, bytes]:
    return {name: derive(master, info) for name, info in IDENTITY_PURPOSES.items()}


def _first_master(folder: Path) -> Path:
    for candidate in (folder / "master.key", folder / "retired" / "master.key"):
        if candidate.exists():
            return candidate
    raise KeyError_(f"no key in {folder}: run `mailflow init` first")


def load_identity(folder: Path) -> dict[str, bytes]:
    """identity.key if there is one, else the keys derived from the first master key."""
    from mailflow.crypto.keyset import read_master

    path = folder / IDENTITY_NAME
    if not path.exists():
        master = env_master_agreeing(folder)
        return identity_from_master(master or read_master(_first_master(folder)))
    try:
        stored = json.loads(path.read_text())
        keys = {name: bytes.fromhex(stored[name]) for name in IDENTITY_PURPOSES}
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"the identity keys at {path} are not readable") from exc
    if any(len(k) != KEY_BYTES for k in keys.values()):
        raise KeyError_(f"the identity keys at {path} have the wrong length")
    return keys


def save_identity(folder: Path) -> bool:
    """Keep the naming keys apart from the first master key (before it can be retired).
    Returns True when identity.key was written."""
    from mailflow.crypto.keyset import write_atomically

    path = folder / IDENTITY_NAME
    if path.exists():
        return False
    keys = load_identity(folder)
    write_atomically(path, json.dumps({n: k.hex() for n, k in keys.items()}).encode())
    return True


@dataclass(frozen=True)
class Keyring:
    """The naming keys (fixed for the life of the installation) and the encryption keys
    (several, the newest sealing: crypto/keyset.py)."""

    blob_name_key: bytes
    lookup_key: bytes
    reply_key: bytes
    token_key: bytes
    sealing: KeySet

    @property
    def folder(self) -> Path:
        return self.sealing.folder

    @classmethod
    def load(cls, storage_dir: Path) -> Keyring:
        from mailflow.crypto.keyset import keyset_for

        folder = keys_dir(storage_dir)
        if not folder.is_dir() and env_master() is None:
            raise KeyError_(f"no key folder at {folder}: run `mailflow init` first")
        return cls(**load_identity(folder), sealing=keyset_for(folder))

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
