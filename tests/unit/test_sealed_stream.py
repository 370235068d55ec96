"""The backup's encrypted stream (mailflow/store/sealed_stream.py): chunks round-trip, and
every kind of damage is refused (reordered, dropped, appended, altered, wrong passphrase)."""

from __future__ import annotations

import io
import os
import struct

import pytest

from mailflow.store.sealed_stream import (
    CHUNK_BYTES,
    SealedReader,
    SealedStreamError,
    SealedWriter,
    WrongPassphrase,
)

PASSPHRASE = "a synthetic test passphrase"


def seal(data: bytes, pieces: int = 1) -> bytes:
    out = io.BytesIO()
    writer = SealedWriter(out, PASSPHRASE)
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    writer.close()
    return out.getvalue()


def unseal(archive: bytes, passphrase: str = PASSPHRASE) -> bytes:
    reader = SealedReader(io.BytesIO(archive), passphrase)
    data = reader.read(12345) + reader.read()
    reader.drain()
    return data


def split(archive: bytes) -> tuple[bytes, list[bytes]]:
    """The archive's header and its chunks (each with its length prefix)."""
    (size,) = struct.unpack(">I", archive[16:20])
    at = 20 + size
    head, chunks = archive[:at], []
    while at < len(archive):
        (n,) = struct.unpack(">I", archive[at : at + 4])
        chunks.append(archive[at : at + 4 + n])
        at += 4 + n
    return head, chunks


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, 2 * CHUNK_BYTES, 2 * CHUNK_BYTES + 7])
def test_any_length_round_trips(size: int) -> None:
    data = os.urandom(size)
    assert unseal(seal(data, pieces=3)) == data


def test_a_wrong_passphrase_is_named_as_such() -> None:
    with pytest.raises(WrongPassphrase):
        unseal(seal(b"x" * 100), passphrase="another synthetic passphrase")


def test_a_short_passphrase_is_refused_when_writing() -> None:
    with pytest.raises(SealedStreamError, match="too short"):
        SealedWriter(io.BytesIO(), "short")


@pytest.mark.parametrize("damage", ["swap", "drop last", "drop middle", "append", "header"])
def test_damage_is_refused(damage: str) -> None:
    head, chunks = split(seal(os.urandom(3 * CHUNK_BYTES + 10)))
    assert len(chunks) == 4
    if damage == "swap":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif damage == "drop last":
        chunks.pop()
    elif damage == "drop middle":
        chunks.pop(1)
    elif damage == "append":
        chunks.append(chunks[-1])
    else:
        head = head.replace(b'"cipher": "AES-256-GCM"', b'"cipher": "AES-256-GCN"')
    with pytest.raises(SealedStreamError):
        unseal(head + b"".join(chunks))
