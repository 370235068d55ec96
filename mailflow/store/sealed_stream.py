"""A passphrase-encrypted byte stream for backups: scrypt, then AES-256-GCM in chunks.

Layout: MAGIC, a 4-byte length and a JSON header (KDF parameters and salt, chunk size, a
passphrase check), then chunks, each a 4-byte length and nonce-less AES-GCM ciphertext. The
nonce is the chunk's counter plus a "last chunk" flag, and every chunk is bound to the whole
header (its SHA-256 as associated data), so reordered, dropped, appended or altered chunks,
an altered header and a truncated stream all fail. The key is fresh per archive (random
salt), so counter nonces never repeat under one key. Memory use is one chunk, whatever the
size of the backup.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
from collections.abc import Callable
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"MAILFLOW-BACKUP\n"
FORMAT = 1
CHUNK_BYTES = 1024 * 1024
# scrypt cost: 128 MiB and about half a second per try, once per backup or restore
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MIN_PASSPHRASE_CHARS = 12
MAX_HEADER_BYTES = 64 * 1024
_LEN = struct.Struct(">I")
_CHECK_LABEL = b"mailflow backup passphrase check"


class SealedStreamError(Exception):
    """The archive cannot be opened: a wrong passphrase, or it is damaged or altered."""


class WrongPassphrase(SealedStreamError):
    pass


def _derive(passphrase: str, kdf: dict[str, object]) -> bytes:
    try:
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])  # type: ignore[call-overload]
        salt = bytes.fromhex(str(kdf["salt"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SealedStreamError("the archive's header is damaged") from exc
    if kdf.get("name") != "scrypt" or n > 2**22 or r > 32 or p > 16:
        raise SealedStreamError("the archive's header is damaged (unknown key derivation)")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealedWriter:
    """A write-only file object: what is written comes out encrypted on `out`."""

    def __init__(self, out: BinaryIO, passphrase: str) -> None:
        if len(passphrase) < MIN_PASSPHRASE_CHARS:
            raise SealedStreamError(
                f"the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters"
            )
        kdf: dict[str, object] = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                                  "salt": secrets.token_hex(16)}
        key = _derive(passphrase, kdf)
        header = json.dumps({
            "format": FORMAT, "cipher": "AES-256-GCM", "chunk_bytes": CHUNK_BYTES, "kdf": kdf,
            "check": hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest(),
        }, sort_keys=True).encode()
        out.write(MAGIC + _LEN.pack(len(header)) + header)
        self._out = out
        self._aead = AESGCM(key)
        self._aad = hashlib.sha256(MAGIC + header).digest()
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK_BYTES:  # keep one back: the last chunk is flagged
            self._emit(bytes(self._buffer[:CHUNK_BYTES]), last=False)
            del self._buffer[:CHUNK_BYTES]
        return len(data)

    def _emit(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, last), plain, self._aad)
        self._out.write(_LEN.pack(len(sealed)) + sealed)
        self._counter += 1

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True


class SealedReader:
    """A read-only file object over an archive; raises SealedStreamError on any damage.
    `on_read` is told how many archive bytes were consumed (for a progress bar)."""

    def __init__(self, src: BinaryIO, passphrase: str,
                 on_read: Callable[[int], None] | None = None) -> None:
        self._src = src
        self._on_read = on_read or (lambda _n: None)
        magic = self._exact(len(MAGIC) + _LEN.size, "is not a mailflow backup")
        if magic[: len(MAGIC)] != MAGIC:
            raise SealedStreamError("this file is not a mailflow backup")
        (size,) = _LEN.unpack(magic[len(MAGIC):])
        if size > MAX_HEADER_BYTES:
            raise SealedStreamError("the archive's header is damaged")
        header_bytes = self._exact(size, "is damaged (its header is cut short)")
        try:
            header = json.loads(header_bytes)
            if header["format"] != FORMAT:
                raise SealedStreamError(f"backup format {header['format']} is not known here")
            key = _derive(passphrase, header["kdf"])
            check = str(header["check"])
            self._chunk_limit = int(header["chunk_bytes"]) + 16
        except (ValueError, KeyError, TypeError) as exc:
            raise SealedStreamError("the archive's header is damaged") from exc
        if not hmac.compare_digest(hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest(), check):
            raise WrongPassphrase("wrong passphrase: it does not open this backup")
        self._aead = AESGCM(key)
        self._aad = hashlib.sha256(MAGIC + header_bytes).digest()
        self._counter = 0
        self._plain = b""
        self._offset = 0
        self._done = False

    def _exact(self, n: int, problem: str) -> bytes:
        data = self._src.read(n)
        self._on_read(len(data))
        if len(data) != n:
            raise SealedStreamError(f"the archive {problem}")
        return data

    def _next_chunk(self) -> None:
        (size,) = _LEN.unpack(self._exact(_LEN.size, "is cut short (truncated)"))
        if size > self._chunk_limit:
            raise SealedStreamError("the archive is damaged or was altered")
        sealed = self._exact(size, "is cut short (truncated)")
        for last in (False, True):
            try:
                self._plain = self._aead.decrypt(_nonce(self._counter, last), sealed, self._aad)
            except InvalidTag:
                continue
            self._counter += 1
            self._offset = 0
            if last:
                if self._src.read(1):
                    raise SealedStreamError("the archive has data after its end (altered)")
                self._done = True
            return
        raise SealedStreamError(
            f"the archive is damaged or was altered (chunk {self._counter + 1} fails its check)"
        )

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = n if n >= 0 else None
        while wanted is None or wanted > 0:
            if self._offset >= len(self._plain):
                if self._done:
                    break
                self._next_chunk()
                continue
            take = len(self._plain) - self._offset if wanted is None else wanted
            piece = self._plain[self._offset : self._offset + take]
            self._offset += len(piece)
            parts.append(piece)
            if wanted is not None:
                wanted -= len(piece)
        return b"".join(parts)

    def drain(self) -> None:
        """Read to the authenticated end (so a truncated tail is caught)."""
        while not self._done or self._offset < len(self._plain):
            self._offset = len(self._plain)
            if not self._done:
                self._next_chunk()
