"""`mailflow blobs migrate`: copy every blob between the files and the database, verified.

Blobs are copied as stored (sealed; nothing is decrypted to be written). Each is checked by
reading it back as a stream: it must open with a key of the set (AES-GCM's tag) and its
plaintext's keyed hash must equal its name, so a damaged or swapped blob is reported and never
copied silently, and no blob is ever whole in memory. The copy is resumable: a blob already at
the destination that passes the check is skipped. It switches nothing: the administrator sets
`[storage] blobs` once it has finished, and only `--remove-source` deletes the originals, each
after its copy passed the check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mailflow.crypto.keys import NONCE_BYTES
from mailflow.crypto.keyset import KeySet
from mailflow.store.blobs import Blobs

TAG_BYTES = 16

Progress = Callable[[str], None]


@dataclass
class MigrationReport:
    total: int = 0
    copied: int = 0
    skipped: int = 0  # already at the destination, verified
    removed: int = 0  # from the source, after verification (--remove-source)
    damaged: list[str] = field(default_factory=list)  # names (short) that failed the check
    stopped_early: bool = False  # --limit reached


def verify(chunks: Callable[[], Iterator[bytes]], digest: str, keys: KeySet,
           name_key: bytes) -> bool:
    """True when the sealed stream opens with a key of the set and its plaintext hashes to
    its name (one pass per key tried; the current key is tried first)."""
    keys.refresh()
    return any(_verify_with(chunks(), digest, key.blob_key, name_key) for key in keys.keys)


def _verify_with(chunks: Iterator[bytes], digest: str, key: bytes, name_key: bytes) -> bool:
    held = bytearray()  # the nonce first, then always the last TAG_BYTES seen
    decryptor = None
    mac = hmac.new(name_key, digestmod=hashlib.sha256)
    for chunk in chunks:
        held += chunk
        if decryptor is None:
            if len(held) < NONCE_BYTES:
                continue
            nonce, held = bytes(held[:NONCE_BYTES]), held[NONCE_BYTES:]
            decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).decryptor()
            decryptor.authenticate_additional_data(digest.encode())
        if len(held) > TAG_BYTES:
            mac.update(decryptor.update(bytes(held[:-TAG_BYTES])))
            del held[:-TAG_BYTES]
    if decryptor is None or len(held) != TAG_BYTES:
        return False
    try:
        mac.update(decryptor.finalize_with_tag(bytes(held)))
    except InvalidTag:
        return False
    return hmac.compare_digest(mac.hexdigest(), digest)


def migrate(source: Blobs, target: Blobs, keys: KeySet, name_key: bytes, progress: Progress,
            remove_source: bool = False, limit: int | None = None) -> MigrationReport:
    names = list(source.files())
    report = MigrationReport(total=len(names))
    every = max(1, len(names) // 100)
    progress(f"blobs 0/{len(names)}")
    for done, digest in enumerate(names, start=1):
        if limit is not None and report.copied >= limit:
            report.stopped_early = True
            progress(f"blobs {done - 1}/{len(names)} (stopped: --limit {limit})")
            return report
        _one(source, target, keys, name_key, digest, report, remove_source)
        if done % every == 0 or done == len(names):
            progress(f"blobs {done}/{len(names)}")
    return report


def _one(source: Blobs, target: Blobs, keys: KeySet, name_key: bytes, digest: str,
         report: MigrationReport, remove_source: bool) -> None:
    def there() -> bool:
        return verify(lambda: target.sealed_chunks(digest), digest, keys, name_key)

    if target.used_at(digest) is not None and there():
        report.skipped += 1
    else:
        used_at = source.used_at(digest)
        if used_at is None:  # deleted meanwhile (the retention purge)
            return
        if not verify(lambda: source.sealed_chunks(digest), digest, keys, name_key):
            report.damaged.append(digest[:12])
            return
        if target.used_at(digest) is not None:  # a damaged copy from an earlier run
            target.remove(digest)
        target.write_sealed(digest, source.sealed_chunks(digest), used_at)
        if not there():
            target.remove(digest)
            report.damaged.append(digest[:12])
            return
        report.copied += 1
    if remove_source:
        source.remove(digest)
        report.removed += 1
