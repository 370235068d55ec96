"""The key set (store/keyset.py): a new key seals in a running process without a restart,
older and retired keys still open, the naming keys outlive the first master key, and a blob
reseal neither resurrects a purged file nor loses its time of last use."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from mailflow.crypto.keys import Keyring, create_master_key, keys_dir, save_identity, unseal
from mailflow.crypto.keyset import KeySet, add_key, load_keys, retire
from mailflow.store.blobs import RESEAL_PREFIX, BlobStore, Resealed, lock_path
from tests.support.mail import wait_until


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    assert create_master_key(tmp_path)
    return keys_dir(tmp_path)


def test_a_new_key_seals_in_a_running_process_and_the_old_one_still_opens(folder: Path) -> None:
    running = KeySet(folder)
    old = running.seal("column", b"sealed before the rotation")
    add_key(folder)
    assert running.current().name == "key-1.key"  # seen without a restart
    new = running.seal("column", b"sealed after")
    assert running.open("column", old)[1].name == "master.key"
    assert running.open("column", new)[1].name == "key-1.key"
    only_old = load_keys(folder)[1]
    with pytest.raises(InvalidTag):  # really under the new key
        unseal(only_old.column_key, new)


def test_a_process_that_has_not_looked_yet_opens_data_under_a_newer_key(folder: Path) -> None:
    stale = KeySet(folder)
    add_key(folder)
    sealed = KeySet(folder).seal("blob", b"photo", b"name")  # another process, newer key
    assert stale.keys[0].name == "master.key"
    assert stale.open("blob", sealed, b"name") == (b"photo", stale.keys[0])
    assert stale.keys[0].name == "key-1.key"  # it reloaded once on the failure


def test_a_retired_key_opens_with_a_warning_naming_only_the_blob(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = BlobStore(tmp_path / "blobs", KeySet(folder), b"n" * 32)
    (tmp_path / "blobs").mkdir()
    digest = store.put(b"Jane Testpatient's photo")
    add_key(folder)
    retire(folder, "master.key")
    caplog.set_level(logging.WARNING)
    assert store.get(digest) == b"Jane Testpatient's photo"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "retired key master.key" in warning and digest[:12] in warning
    assert "Testpatient" not in warning
    assert [(k.name, k.retired) for k in load_keys(folder)] == [
        ("key-1.key", False), ("master.key", True)]


def test_every_key_retired_is_refused_with_a_way_out(folder: Path) -> None:
    retire(folder, "master.key")
    with pytest.raises(Exception, match="every key .* is retired"):
        load_keys(folder)


def test_the_naming_keys_outlive_the_first_master_key(folder: Path, tmp_path: Path) -> None:
    before = Keyring.load(tmp_path)
    assert save_identity(folder)
    add_key(folder)
    retire(folder, "master.key")
    (folder / "retired" / "master.key").unlink()  # the operator deletes it, as the README says
    after = Keyring.load(tmp_path)
    assert (after.lookup_key, after.reply_key, after.token_key, after.blob_name_key) == (
        before.lookup_key, before.reply_key, before.token_key, before.blob_name_key)
    assert not create_master_key(tmp_path)  # `mailflow init` again adds no unrelated key
    assert not (folder / "master.key").exists()


def test_a_reseal_keeps_the_time_of_last_use(folder: Path, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", KeySet(folder), b"n" * 32)
    (tmp_path / "blobs").mkdir()
    digest = store.put(b"bytes")
    path = store._path(digest)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    add_key(folder)
    assert store.reseal(digest) is Resealed.RESEALED
    assert path.stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert store.opening_key(digest).name == "key-1.key"  # type: ignore[union-attr]
    assert store.reseal(digest) is Resealed.CURRENT


def test_a_reseal_does_not_bring_back_a_file_the_purge_deleted(
    folder: Path, tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "blobs", KeySet(folder), b"n" * 32)
    (tmp_path / "blobs").mkdir()
    digest = store.put(b"past its retention")
    add_key(folder)
    outcome: list[Resealed] = []
    with store._locked(shared=False):  # the purge holds the lock ...
        worker = threading.Thread(target=lambda: outcome.append(store.reseal(digest)))
        worker.start()
        wait_until(lambda: list(store.root.glob(f"*/*/{RESEAL_PREFIX}*")), 30,
                   "the reseal waiting for the lock")
        assert store._discard(store._path(digest), used_before=2e9)  # ... and deletes it
    worker.join(30)
    assert outcome == [Resealed.GONE]
    assert not store.exists(digest)
    assert not list(store.root.glob(f"*/*/{RESEAL_PREFIX}*"))
    assert lock_path(store.root).exists() and not list(store.root.glob("*.lock"))
