"""Encrypted, content-addressed blob store: raw messages, photos, PDFs.

A blob is named by a keyed SHA-256 (HMAC) of its plaintext, so the same bytes are stored once
but nobody with only the disk can confirm that a known photo is there. It is written as
nonce||AES-GCM ciphertext to a temporary file, fsynced, renamed into place, and the folder
fsynced: once `put` returns, the bytes survive a crash. The name is bound into the ciphertext,
so a swapped file fails to open.

Blobs are sealed with the current key and open with any key of the set (crypto/keyset.py);
`reseal` moves one to the current key for `mailflow keys rotate`. A lock file shared by
`put` (when it marks an existing file as used) and taken alone by `discard` and `reseal`
keeps a rotation from bringing back a file the retention purge is deleting, or from losing
the mark of use a `put` just made.

`Blobs` is what every user of a store relies on; `[storage] blobs` picks this store or the
one in the database (store/db_blobs.py), which seals and names blobs the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag

from mailflow.crypto.keys import seal
from mailflow.crypto.keyset import KeySet, SealingKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

RESEAL_PREFIX = ".reseal-"
TMP_PREFIX = ".tmp-"  # a blob being written
PURGE_PREFIX = ".purge-"  # a blob the purge has set aside while it decides


class Resealed(Enum):
    CURRENT = "already under the current key"
    RESEALED = "resealed under the current key"
    GONE = "deleted or replaced meanwhile"
    UNREADABLE = "opens with no key"


def lock_path(root: Path) -> Path:
    """Beside the store, not in it: every file in the store is a blob (var/blobs.lock)."""
    return root.with_name(f"{root.name}.lock")


class BlobUse(NamedTuple):
    name: str
    used_at: float  # last written or used (a timestamp): a file's mtime, a row's used_at


class BlobError(Exception):
    pass


def check_name(digest: str) -> None:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BlobError(f"not a blob name: {digest!r}")


def blob_name(name_key: bytes, data: bytes) -> str:
    """A blob's name: the keyed SHA-256 of its plaintext."""
    return hmac.new(name_key, data, hashlib.sha256).hexdigest()


class Blobs(Protocol):
    """A blob store: files (below) or the database (store/db_blobs.py)."""

    keys: KeySet

    # `session`: the caller's open transaction, which a database store writes in
    def put(self, data: bytes, session: Session | None = None) -> str: ...
    def get(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def discard(self, digest: str, used_before: float) -> bool: ...
    def opening_key(self, digest: str) -> SealingKey | None: ...
    def reseal(self, digest: str) -> Resealed: ...
    def files(self) -> Iterator[str]: ...
    # every blob with its time of last use, in name order (the retention's orphan search)
    def listing(self) -> Iterator[BlobUse]: ...
    def remove_abandoned_reseals(self) -> int: ...
    # what a process stopped halfway through a write left behind (the retention run)
    def sweep_abandoned(self, used_before: float, dry_run: bool = False) -> int: ...
    # for `mailflow blobs migrate`: sealed bytes as stored, copied without opening them
    def sealed_chunks(self, digest: str) -> Iterator[bytes]: ...
    def write_sealed(self, digest: str, chunks: Iterable[bytes], used_at: float) -> None: ...
    def used_at(self, digest: str) -> float | None: ...
    def remove(self, digest: str) -> None: ...


def sealed_anew(keys: KeySet, sealed: bytes, digest: str) -> bytes | Resealed:
    """A stored blob sealed again under the current key, for either store to put in place; or
    why nothing is to be done (it opens with no key, or is already under the current one)."""
    current = keys.current()
    try:
        plain, key = keys.open("blob", sealed, digest.encode())
    except InvalidTag:
        return Resealed.UNREADABLE
    if key.name == current.name:
        return Resealed.CURRENT
    return seal(current.blob_key, plain, digest.encode())


class BlobStore:
    def __init__(self, root: Path, keys: KeySet, name_key: bytes) -> None:
        self.root = root
        self.keys = keys
        self._name_key = name_key

    @contextmanager
    def _locked(self, shared: bool) -> Iterator[None]:
        lock = lock_path(self.root)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # a store not written to yet
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _path(self, digest: str) -> Path:
        check_name(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes, session: Session | None = None) -> str:
        digest = blob_name(self._name_key, data)
        path = self._path(digest)
        with self._locked(shared=True):
            if _touch(path):  # already there: marked as just used, so a purge leaves it alone
                return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        sealed = self.keys.seal("blob", data, digest.encode())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
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
            return self.keys.open("blob", sealed, digest.encode(), what=f"blob {digest[:12]}")[0]
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
        with self._locked(shared=False):
            return self._discard(self._path(digest), used_before)

    def _discard(self, path: Path, used_before: float) -> bool:
        parked = path.with_name(f"{PURGE_PREFIX}{path.name}")
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

    def opening_key(self, digest: str) -> SealingKey | None:
        """The key the blob opens with (None: no key opens it, or it is gone)."""
        path = self._path(digest)
        try:
            return self.keys.open("blob", path.read_bytes(), digest.encode())[1]
        except (FileNotFoundError, InvalidTag):
            return None

    def reseal(self, digest: str) -> Resealed:
        """Seal the blob again under the current key, if it is not already, in place.

        The new file replaces the old only if the old is still there (the purge did not
        delete it meanwhile, under the same lock) and keeps its time of last use."""
        path = self._path(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return Resealed.GONE
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                sealed = fh.read()
            resealed = sealed_anew(self.keys, sealed, digest)
            if isinstance(resealed, Resealed):
                return resealed
            fresh = self._write_reseal(path, resealed, digest)
            with self._locked(shared=False):
                return self._replace(path, fd, fresh)
        finally:
            os.close(fd)

    def _write_reseal(self, path: Path, sealed: bytes, digest: str) -> Path:
        tmp = path.with_name(f"{RESEAL_PREFIX}{digest}")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(out, sealed)
            os.fsync(out)
        finally:
            os.close(out)
        return tmp

    def _replace(self, path: Path, old_fd: int, fresh: Path) -> Resealed:
        """Under the lock: put `fresh` in place of the file open as `old_fd`, if still there."""
        old = os.fstat(old_fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (old.st_ino, old.st_dev):
            fresh.unlink()
            return Resealed.GONE
        os.utime(fresh, ns=(old.st_atime_ns, old.st_mtime_ns))  # its last use, unchanged
        os.replace(fresh, path)
        _fsync_dir(path.parent)
        return Resealed.RESEALED

    def sealed_chunks(self, digest: str, size: int = 1024 * 1024) -> Iterator[bytes]:
        try:
            fh = self._path(digest).open("rb")
        except FileNotFoundError:
            return
        with fh:
            while chunk := fh.read(size):
                yield chunk

    def write_sealed(self, digest: str, chunks: Iterable[bytes], used_at: float) -> None:
        """Write a blob's sealed bytes as given (a copy between stores), as `put` writes."""
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.utime(tmp, (used_at, used_at))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def used_at(self, digest: str) -> float | None:
        try:
            return self._path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    def remove(self, digest: str) -> None:
        """Delete a blob whatever its use (`mailflow blobs migrate --remove-source`)."""
        with self._locked(shared=False):
            self._path(digest).unlink(missing_ok=True)

    def files(self) -> Iterator[str]:
        """Every blob's name, folder by folder (a listing of one folder at a time)."""
        for path in self._paths():
            yield path.name

    def listing(self) -> Iterator[BlobUse]:
        """Every blob with its mtime, in name order, one folder listed at a time."""
        for path in self._paths():
            try:
                yield BlobUse(path.name, path.stat().st_mtime)
            except FileNotFoundError:  # deleted since its folder was listed
                continue

    def _paths(self) -> Iterator[Path]:
        # in name order: the two folder levels are the name's first four characters
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            for second in sorted(first.iterdir()) if first.is_dir() else ():
                for path in sorted(second.iterdir()) if second.is_dir() else ():
                    if len(path.name) == 64 and not path.name.startswith("."):
                        yield path

    def sweep_abandoned(self, used_before: float, dry_run: bool = False) -> int:
        """What a stopped process left in the folders, found by one walk; the number of
        unfinished writes (`.tmp-`, `.reseal-`) deleted, or with `dry_run` to be deleted.

        A write in progress changes its file's inode time (st_ctime, which no `utime` sets
        back) at every step, so one unchanged since `used_before` was abandoned. A blob the
        purge set aside (`.purge-`) and never finished with is put back, unless written afresh
        since: the purge had not decided, and the same bytes may be in use again; the sweeps
        that follow judge it like any other."""
        count = 0
        for entry in self._dot_files():
            if entry.name.startswith(PURGE_PREFIX):
                if not dry_run:
                    self._unpark(Path(entry.path))
                continue
            if not entry.name.startswith((TMP_PREFIX, RESEAL_PREFIX)):
                continue
            try:
                changed = entry.stat().st_ctime
            except FileNotFoundError:  # finished meanwhile
                continue
            if changed < used_before:
                count += 1
                if not dry_run:
                    Path(entry.path).unlink(missing_ok=True)
        return count

    def _dot_files(self) -> Iterator[os.DirEntry[str]]:
        for first in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            for second in sorted(first.iterdir()) if first.is_dir() else ():
                if second.is_dir():
                    with os.scandir(second) as entries:
                        yield from [e for e in entries if e.name.startswith(".")]

    def _unpark(self, parked: Path) -> None:
        path = parked.with_name(parked.name.removeprefix(PURGE_PREFIX))
        with self._locked(shared=False):  # no purge is deciding about it now
            try:
                if path.exists():
                    parked.unlink()
                else:
                    os.replace(parked, path)
            except FileNotFoundError:
                return
        _fsync_dir(path.parent)

    def remove_abandoned_reseals(self) -> int:
        """Files a stopped rotation left half done (only while no rotation runs)."""
        count = 0
        for path in self.root.glob(f"*/*/{RESEAL_PREFIX}*") if self.root.is_dir() else ():
            path.unlink(missing_ok=True)
            count += 1
        return count


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
