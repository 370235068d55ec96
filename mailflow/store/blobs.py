"""Encrypted, content-addressed blob store: raw messages, photos, PDFs.

A blob is named by a keyed SHA-256 (HMAC) of its plaintext, so the same bytes are stored once
but nobody with only the disk can confirm that a known photo is there. It is written as
nonce||AES-GCM ciphertext to a temporary file, fsynced, renamed into place, and the folder
fsynced: once `put` returns, the bytes survive a crash. The name is bound into the ciphertext,
so a swapped file fails to open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag

from mailflow.store.keys import seal, unseal


class BlobError(Exception):
    pass


class BlobStore:
    def __init__(self, root: Path, key: bytes, name_key: bytes) -> None:
        self.root = root
        self._key = key
        self._name_key = name_key

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BlobError(f"not a blob name: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        digest = hmac.new(self._name_key, data, hashlib.sha256).hexdigest()
        path = self._path(digest)
        if _touch(path):  # already there: marked as just used, so a purge leaves it alone
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        sealed = seal(self._key, data, digest.encode())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
            _touch(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return digest

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobError(f"blob {digest[:12]}… is missing") from exc
        try:
            return unseal(self._key, sealed, digest.encode())
        except InvalidTag as exc:
            raise BlobError(f"blob {digest[:12]}… failed its integrity check") from exc

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def discard(self, digest: str, used_before: float) -> bool:
        """Delete a blob no row needs any more (the retention purge); True if it was deleted.

        The same bytes may be arriving again at this moment: `put` of existing bytes only
        touches the file, and its row is committed after. So the file is first renamed away
        (a `put` from then on writes it afresh), and kept after all if it was written or
        touched at or after `used_before` (a timestamp).
        """
        path = self._path(digest)
        parked = path.with_name(f".purge-{digest}")
        try:
            os.replace(path, parked)
        except FileNotFoundError:
            return False
        if parked.stat().st_mtime >= used_before:
            if path.exists():  # written afresh meanwhile: the same bytes
                parked.unlink()
            else:
                os.replace(parked, path)
            return False
        parked.unlink()
        _fsync_dir(path.parent)
        return True


def _touch(path: Path) -> bool:
    """Mark a blob file as used now (the process clock); False when there is no such file."""
    now = time.time()
    try:
        os.utime(path, (now, now))
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
