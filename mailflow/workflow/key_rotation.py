"""`mailflow keys rotate` and `mailflow keys status` (README, "Rotating the encryption key").

A rotation adds a new master key (it seals everything new from then on, in every process,
without a restart), then moves every encrypted column value and every blob under it, a batch
at a time, while the service runs. It is resumable by design: nothing records how far it got;
a new run finds what is still under an older key and carries on. When a whole pass finds
nothing left, the old keys move to keys/retired/ (they still open, for old backups). Only the
encryption keys rotate: the naming keys (blob names, look-up hashes, reply addresses, password
links) stay those of the first key (crypto/keys.py, identity.key).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mailflow import audit
from mailflow.app import App
from mailflow.crypto.keys import MASTER_KEY_ENV, env_master, save_identity
from mailflow.crypto.keyset import SealingKey, add_key, retire
from mailflow.db.session import transaction
from mailflow.store.blobs import Resealed
from mailflow.store.rotate_columns import (
    EncryptedTable,
    RotationError,
    batches,
    count_rows,
    encrypted_tables,
    write_batch,
)

log = logging.getLogger(__name__)

ROTATION_LOCK = ".rotation.lock"
ACTOR = "cli"
MAX_PASSES = 5  # a pass that keeps finding new old-key data: some process has a stale view

Progress = Callable[[str], None]


@dataclass
class RotationReport:
    key: str = ""  # the current key after the run
    resumed: bool = False
    values: int = 0  # column values re-encrypted
    files: int = 0  # blobs re-encrypted
    changed_meanwhile: int = 0  # values the service changed while we worked (left as they are)
    passes: int = 0
    retired: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "table id column" / "blob <id>"


@contextmanager
def rotation_lock(app: App) -> Iterator[None]:
    """One rotation at a time; the lock goes with the process, even after a kill -9."""
    fd = os.open(app.keys.folder / ROTATION_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RotationError("another `mailflow keys rotate` is running") from exc
        yield
    finally:
        os.close(fd)


def _live(app: App) -> list[SealingKey]:
    return [k for k in app.keys.sealing.keys if not k.retired]


def rotate(app: App, progress: Progress) -> RotationReport:
    """Start a rotation, or resume one that stopped; returns what was done."""
    if env_master() is not None:
        raise RotationError(f"the key comes from {MASTER_KEY_ENV}: a rotation writes its new "
                            f"key to {app.keys.folder}, which the other machines would not "
                            f"see. Not supported yet with the key in the environment")
    with rotation_lock(app):
        keys = app.keys.sealing
        keys.reload()
        report = RotationReport(resumed=len(_live(app)) > 1)
        if not report.resumed:
            save_identity(app.keys.folder)  # before the first key can ever be retired
            add_key(app.keys.folder)
            keys.reload()
        target = keys.current()
        report.key = target.name
        old = [k.name for k in _live(app) if k.name != target.name]
        _audit(app, "keys.rotation_started", target.name,
               {"old_keys": old, "resumed": report.resumed})
        progress(f"{'resuming the rotation to' if report.resumed else 'new key'} {target.name}; "
                 f"older keys still open everything until it is done")
        app.blobs.remove_abandoned_reseals()
        for report.passes in range(1, MAX_PASSES + 1):
            report.unreadable = []
            changed = _columns_pass(app, target, report, progress)
            changed += _blobs_pass(app, target, report, progress)
            if not changed:
                break
        else:
            raise RotationError(f"data under an older key kept appearing after {MAX_PASSES} "
                                "passes: does every process read the same keys folder?")
        report.retired = [retire(app.keys.folder, name).name for name in old]
        keys.reload()
        _audit(app, "keys.rotation_finished", target.name, {
            "values": report.values, "files": report.files, "passes": report.passes,
            "retired": report.retired, "unreadable": len(report.unreadable)})
        return report


def _pause(app: App) -> None:
    if app.config.keys.pause_seconds:
        time.sleep(app.config.keys.pause_seconds)  # leave the disk and database to the service


def _columns_pass(app: App, target: SealingKey, report: RotationReport,
                  progress: Progress) -> int:
    changed = 0
    for et in encrypted_tables():
        changed += _table(app, et, target, report, progress)
    return changed


def _table(app: App, et: EncryptedTable, target: SealingKey, report: RotationReport,
           progress: Progress) -> int:
    total, done, changed = count_rows(app.engine, et), 0, 0
    limit = app.config.keys.batch_size
    for batch in batches(app.engine, et, app.keys.sealing, target, limit):
        written = write_batch(app.engine, et, batch.stale)
        report.values += written
        report.changed_meanwhile += len(batch.stale) - written
        report.unreadable += batch.unreadable
        changed += len(batch.stale)
        done += batch.rows
        if batch.stale:
            progress(f"  {et.name} {min(done, total)}/{total}")
            _pause(app)
    return changed


def _blobs_pass(app: App, target: SealingKey, report: RotationReport,
                progress: Progress) -> int:
    names = list(app.blobs.files())
    limit = app.config.keys.batch_size
    changed = in_batch = 0
    progress(f"  blobs 0/{len(names)}")
    for done, digest in enumerate(names, start=1):
        outcome = app.blobs.reseal(digest)
        if outcome is Resealed.UNREADABLE:
            report.unreadable.append(f"blob {digest[:12]}")
        elif outcome is Resealed.RESEALED:
            report.files += 1
            changed += 1
            in_batch += 1
        if in_batch >= limit or (done == len(names) and in_batch):
            progress(f"  blobs {done}/{len(names)}")
            in_batch = 0
            _pause(app)
    return changed


def _audit(app: App, action: str, key: str, detail: dict[str, Any]) -> None:
    with transaction(app.sessions) as session:
        audit.record(session, action, actor=ACTOR, entity="keys", entity_id=key, detail=detail)


@dataclass
class KeyStatus:
    name: str
    state: str  # current | old | retired
    values: int = 0  # column values under it
    files: int = 0  # blobs under it


def survey(app: App) -> tuple[list[KeyStatus], list[str]]:
    """Every key and how much is still under it (reads every value and file), and what no
    key opens."""
    keys = app.keys.sealing
    keys.reload()
    current = keys.current()
    status = {k.name: KeyStatus(k.name, "current" if k.name == current.name
                                else "retired" if k.retired else "old") for k in keys.keys}
    unreadable: list[str] = []
    for et in encrypted_tables():
        for batch in batches(app.engine, et, keys, current, 500):
            unreadable += batch.unreadable
            for name, count in batch.under.items():
                status[name].values += count
    for digest in app.blobs.files():
        key = app.blobs.opening_key(digest)
        if key is None:
            unreadable.append(f"blob {digest[:12]}")
        else:
            status[key.name].files += 1
    return list(status.values()), unreadable
