"""The encryption keys in var/keys: several master keys, the newest sealing, all opening.

`master.key` (generation 0, made by `mailflow init`) and `key-<n>.key` (made by `mailflow keys
rotate`) each hold a 256-bit master key in hex, from which the blob and column keys are derived.
The highest generation not in `retired/` is the current key: it seals everything new. Every
key, retired ones too, can open: a reader tries the current key first, then the others
(AES-GCM refuses a wrong key cleanly), so the stored format carries no key id.

A running process notices a new or retired key without a restart: before sealing or opening
it compares the folders' modification times with those it loaded (two stat calls), and after
a failed open with every key it knows it reloads once and tries again (docs/decisions.md,
"Key rotation").
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag

from mailflow.crypto.keys import KEY_BYTES, KeyError_, derive, env_master_agreeing, seal, unseal

log = logging.getLogger(__name__)

LEGACY_NAME = "master.key"
RETIRED = "retired"
FOLDER_LOCK = ".keys.lock"  # held while the set of keys changes, and while a backup copies it
_KEY_NAME = re.compile(r"key-([1-9][0-9]{0,8})\.key")
# a listing taken this soon after the folder changed may have missed a change in the same
# tick of the file system's clock: it is read again next time (as git does for racy files)
_RACY_NS = 50_000_000

Purpose = Literal["blob", "column"]


@dataclass(frozen=True)
class SealingKey:
    name: str  # its file name: master.key, key-3.key
    generation: int
    retired: bool
    blob_key: bytes
    column_key: bytes

    def key_for(self, purpose: Purpose) -> bytes:
        return self.blob_key if purpose == "blob" else self.column_key


def key_generation(name: str) -> int | None:
    if name == LEGACY_NAME:
        return 0
    match = _KEY_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def read_master(path: Path) -> bytes:
    try:
        master = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError as exc:
        raise KeyError_(f"no key at {path}: run `mailflow init` first") from exc
    except ValueError as exc:
        raise KeyError_(f"the key at {path} is not readable") from exc
    if len(master) != KEY_BYTES:
        raise KeyError_(f"the key at {path} has the wrong length")
    return master


def key_files(folder: Path) -> list[tuple[Path, int, bool]]:
    """(path, generation, retired) of every master key in the folder, newest first."""
    found = []
    for where, retired in ((folder, False), (folder / RETIRED, True)):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            generation = key_generation(path.name)
            if generation is not None and path.is_file():
                found.append((path, generation, retired))
    return sorted(found, key=lambda f: (f[2], -f[1]))


def load_keys(folder: Path) -> tuple[SealingKey, ...]:
    """Every key, in the order to try them: the current key, other live keys, retired ones."""
    keys = []
    files = key_files(folder)
    for path, generation, retired in files:
        keys.append(_sealing_key(path.name, generation, retired, read_master(path)))
    master = env_master_agreeing(folder)
    if master is not None and not any(g == 0 for _, g, _ in files):
        # the environment's key stands for master.key: newer keys in the folder seal first
        keys.insert(sum(not k.retired for k in keys), _sealing_key(LEGACY_NAME, 0, False, master))
    if not keys:
        raise KeyError_(f"no key in {folder}: run `mailflow init` first")
    if keys[0].retired:
        raise KeyError_(f"every key in {folder} is retired: move the newest back out of "
                        f"{folder / RETIRED}")
    return tuple(keys)


def _sealing_key(name: str, generation: int, retired: bool, master: bytes) -> SealingKey:
    return SealingKey(name, generation, retired, derive(master, "mailflow blobs v1"),
                      derive(master, "mailflow columns v1"))


def _stamp(folder: Path) -> tuple[int, int]:
    def mtime(path: Path) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return 0
    return mtime(folder), mtime(folder / RETIRED)


class KeySet:
    """The keys of one folder, reloaded when the folder changes. Thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._keys: tuple[SealingKey, ...] = ()
        self._stamp = (0, 0)
        self._settled = False
        self.reload()

    def reload(self) -> None:
        with self._lock:
            listed_at = time.time_ns()
            stamp = _stamp(self.folder)
            self._keys = load_keys(self.folder)
            self._stamp = stamp
            self._settled = max(stamp) < listed_at - _RACY_NS

    def refresh(self) -> None:
        """Reload if the folder changed since it was read (two stat calls otherwise)."""
        if not self._settled or _stamp(self.folder) != self._stamp:
            self.reload()

    @property
    def keys(self) -> tuple[SealingKey, ...]:
        return self._keys

    def current(self) -> SealingKey:
        self.refresh()
        return self._keys[0]

    def seal(self, purpose: Purpose, plaintext: bytes, associated: bytes = b"") -> bytes:
        return seal(self.current().key_for(purpose), plaintext, associated)

    def open(self, purpose: Purpose, sealed: bytes, associated: bytes = b"",
             what: str = "") -> tuple[bytes, SealingKey]:
        """The plaintext and the key that opened it; InvalidTag when no key does."""
        self.refresh()
        for attempt in (1, 2):
            for key in self._keys:
                try:
                    plain = unseal(key.key_for(purpose), sealed, associated)
                except InvalidTag:
                    continue
                if key.retired:
                    self._warn_retired(key, purpose, what)
                return plain, key
            if attempt == 1:
                self.reload()  # sealed under a key made since we looked
        raise InvalidTag()

    def _warn_retired(self, key: SealingKey, purpose: Purpose, what: str) -> None:
        if (key.name, what or purpose) in self._warned:
            return
        self._warned.add((key.name, what or purpose))
        log.warning("a %s%s was opened with the retired key %s: run `mailflow keys rotate`",
                    purpose, f" ({what})" if what else "", key.name)


_shared: dict[Path, KeySet] = {}
_shared_lock = threading.Lock()


def keyset_for(folder: Path) -> KeySet:
    """One KeySet per folder per process (a pool process opens its store on every task)."""
    folder = folder.resolve()
    with _shared_lock:
        if folder not in _shared:
            _shared[folder] = KeySet(folder)
        return _shared[folder]


@contextmanager
def folder_lock(folder: Path, shared: bool = False) -> Iterator[None]:
    """Held while keys are added or retired (exclusive) and while a backup copies them."""
    fd = os.open(folder / FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """tmp, fsync, rename, fsync the folder: the file is whole or absent, even after a crash."""
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def add_key(folder: Path) -> SealingKey:
    """Write a new master key, newer than every other: from now on it seals."""
    with folder_lock(folder):
        newest = max(g for _, g, _ in key_files(folder))
        path = folder / f"key-{newest + 1}.key"
        write_atomically(path, secrets.token_bytes(KEY_BYTES).hex().encode())
    return next(k for k in load_keys(folder) if k.name == path.name)


def retire(folder: Path, name: str) -> Path:
    """Move a key to retired/: it seals nothing and is not needed, but still opens."""
    with folder_lock(folder):
        target = folder / RETIRED
        target.mkdir(mode=0o700, exist_ok=True)
        os.replace(folder / name, target / name)
        _fsync_dir(target)
        _fsync_dir(folder)
    return target / name
