"""The process pool that runs `parse.analyze`, and that survives losing a worker process.

A child can die (an out-of-memory kill while decoding a photo, a signal); the standard pool
then refuses every later task. This wrapper builds a new pool and tries the task once more, so
one bad moment does not send every following message to quarantine.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine

from mailflow.crypto.keyset import keyset_for
from mailflow.crypto.smime import Unwrapped, headers_only, is_smime, unwrap
from mailflow.crypto.smime_certs import Identity
from mailflow.db.session import make_engine
from mailflow.parse.analyze import Analysis, Photo, StoredPhoto, analyze
from mailflow.parse.fingerprint import fingerprint
from mailflow.parse.types import ImageLimits, MimeLimits
from mailflow.store.blobs import Blobs, BlobStore
from mailflow.store.db_blobs import DatabaseBlobStore

if TYPE_CHECKING:
    from mailflow.app import App

log = logging.getLogger(__name__)
T = TypeVar("T")


def _child_init(nice: int = 0) -> None:
    # Ctrl-C and SIGTERM go to the whole process group; the parent shuts the pool down in
    # order, so the children must not die first with work half done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice:
        # decoding photos can wait a moment; the SMTP door's answer and the web cannot
        os.nice(nice)
    import mailflow.parse.analyze  # noqa: F401  (import cost paid at start, not on a case)


_engines: dict[str, Engine] = {}


@dataclass(frozen=True)
class BlobAccess:
    """What a process needs to read and write the blob store itself."""

    root: Path
    keys_folder: Path  # the process reads the keys itself, and sees a new one (keyset.py)
    name_key: bytes = field(repr=False)  # secrets stay out of any log line that shows this
    database_url: str = field(default="", repr=False)  # set: the blobs are in this database
    chunk_bytes: int = 1024 * 1024

    def open(self) -> Blobs:
        keys = keyset_for(self.keys_folder)
        if not self.database_url:
            return BlobStore(self.root, keys, self.name_key)
        if self.database_url not in _engines:  # one engine per process, as with the keys
            _engines[self.database_url] = make_engine(self.database_url)
        return DatabaseBlobStore(_engines[self.database_url], keys, self.name_key,
                                 self.chunk_bytes)


def blob_access(app: App) -> BlobAccess:
    in_db = app.config.storage.blobs == "database"
    return BlobAccess(app.config.storage_dir / "blobs", app.keys.folder, app.keys.blob_name_key,
                      app.config.database_url if in_db else "", app.config.storage.chunk_bytes)


def _store(blobs: Blobs, photo: Photo) -> StoredPhoto:
    image = photo.image
    return StoredPhoto(
        filename=photo.filename,
        description=photo.description,
        original_sha=blobs.put(photo.original),
        clean_sha=blobs.put(image.clean),
        clean_content_type=image.clean_content_type,
        review_sha=blobs.put(image.review) if image.review else "",
        thumbnail_sha=blobs.put(image.thumbnail),
        format=image.format,
        width=image.width,
        height=image.height,
        warnings=image.warnings,
    )


def analyze_stored(access: BlobAccess, raw_sha: str, envelope_from: str,
                   mime_limits: MimeLimits, image_limits: ImageLimits) -> Analysis:
    """Read the message from the store, analyse it, store its photos; return no bytes.

    Runs in a pool process: the message's bytes and every copy of its photos live and die
    here, never pickled to the worker or held by it.
    """
    blobs = access.open()
    return _analyze(blobs, blobs.get(raw_sha), envelope_from, mime_limits, image_limits)


def _analyze(blobs: Blobs, raw: bytes, envelope_from: str, mime_limits: MimeLimits,
             image_limits: ImageLimits) -> Analysis:
    analysis = analyze(raw, envelope_from, mime_limits, image_limits)
    photos = tuple(_store(blobs, p) for p in analysis.photos if isinstance(p, Photo))
    return replace(analysis, photos=photos)


@dataclass(frozen=True)
class Opened:
    analysis: Analysis
    smime: Unwrapped | None = None  # None: no S/MIME layer (or S/MIME is off); raw left out


def open_stored(access: BlobAccess, raw_sha: str, envelope_from: str, mime_limits: MimeLimits,
                image_limits: ImageLimits, smime: Identity | None, at: datetime) -> Opened:
    """`analyze_stored`, after opening the message's S/MIME layers (crypto/smime.py).

    A message whose S/MIME check fails is analysed by its headers alone (who sent it, to
    whom, its subject): nothing it carries is read, so no case can come of it."""
    blobs = access.open()
    raw = blobs.get(raw_sha)
    if smime is None or not is_smime(raw):
        return Opened(_analyze(blobs, raw, envelope_from, mime_limits, image_limits))
    opened = unwrap(raw, smime, at)
    if opened.problem_code:
        analysis = analyze(headers_only(raw), envelope_from, mime_limits, image_limits)
        return Opened(replace(analysis, fingerprint=fingerprint(raw)), opened)
    analysis = _analyze(blobs, opened.raw, envelope_from, mime_limits, image_limits)
    return Opened(analysis, replace(opened, raw=b""))


def _start_all(executor: ProcessPoolExecutor, workers: int) -> ProcessPoolExecutor:
    """Each task submitted while no process is idle starts one: as many at once as there are
    to be."""
    for started in [executor.submit(time.sleep, 0.01) for _ in range(workers)]:
        started.result()
    return executor


class AnalysisPool:
    def __init__(self, workers: int, nice: int = 0) -> None:
        self.workers = workers
        self.nice = nice
        self._lock = threading.Lock()
        self._executor = self._new()

    def _new(self, workers: int = 0) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that holds threads and database handles is unsafe
        return ProcessPoolExecutor(
            workers or self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init, initargs=(self.nice,),
        )

    def warm(self) -> None:
        """Start every process now. CPython (3.11) starts a spawn pool's processes as tasks
        come, and one started while the pool's manager is waiting is not watched: its death
        went unnoticed until another task ended (a killed analysis held up its loop)."""
        _start_all(self._executor, self.workers)

    def analyze(self, *args: Any) -> Analysis:
        """`analyze_stored(*args)` in a pool process."""
        return self.run(analyze_stored, *args)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a pool process.

        A process that dies breaks the whole pool, so every task in it at that moment fails,
        not only the one that killed it. Each is tried again in a new pool; one that fails
        there too (the same killer was in it again, beside it) is tried once more alone, in a
        process of its own: only a task that kills its own process fails."""
        for _attempt in (1, 2):
            executor = self._executor
            try:
                return executor.submit(fn, *args).result()
            except BrokenProcessPool:
                log.error("an analysis process died; starting a new pool")
                with self._lock:
                    if self._executor is executor:
                        executor.shutdown(wait=False, cancel_futures=True)
                        self._executor = _start_all(self._new(), self.workers)
        alone = self._new(1)
        try:
            return alone.submit(fn, *args).result()
        finally:
            alone.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def processes(self) -> list[int]:
        """The children's pids (for tests that kill one)."""
        return [p.pid for p in (self._executor._processes or {}).values()]  # type: ignore[union-attr]
