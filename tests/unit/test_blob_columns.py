"""The retention run deletes every blob no row names (workflow/orphans.py): a column that names
blobs and is missing from `BLOB_COLUMNS` would have its blobs deleted as orphans. So every
column of a blob name's size in every table is either listed there or known to be no blob."""

from __future__ import annotations

import pytest
from sqlalchemy import String

from mailflow.db.blob_models import NAME_CHARS
from mailflow.db.models import Base
from mailflow.workflow.orphans import BLOB_COLUMNS, OutOfOrder, _unmatched

# 64-character columns that hold something other than a blob's name
NOT_BLOBS = {
    "patients.lookup", "patients.mrn_lookup",  # keyed hashes to find a patient
    "inbound_messages.fingerprint", "message_fingerprints.fingerprint",  # duplicates
    "provider_certificates.fingerprint",  # a certificate's SHA-256
    "audit_events.entity_id", "audit_events.prev_hash", "audit_events.hash",
    "audit_head.last_hash",
    "blobs.name", "blob_chunks.name",  # the database blob store itself
    "web_sessions.nonce_hash",  # a sign-in's one-time value, hashed
    "signin_addresses.address", "signin_counters.address",  # the lockout's client addresses
}


def sized_like_a_blob_name() -> set[str]:
    return {f"{table.name}.{column.name}" for table in Base.metadata.tables.values()
            for column in table.columns
            if isinstance(column.type, String) and column.type.length == NAME_CHARS}


def test_every_column_that_can_name_a_blob_is_listed_or_known_to_be_no_blob() -> None:
    listed = {f"{c.class_.__tablename__}.{c.key}" for c in BLOB_COLUMNS}
    every = sized_like_a_blob_name()
    assert listed <= every
    assert every - listed == NOT_BLOBS, (
        "a new 64-character column: add it to workflow/orphans.BLOB_COLUMNS if it names a "
        "blob (or the retention run deletes its blobs), or to NOT_BLOBS here if not")
    named_sha = {f"{t.name}.{c.name}" for t in Base.metadata.tables.values()
                 for c in t.columns if c.name.endswith("_sha")}
    assert named_sha == listed


def test_the_merge_keeps_every_named_blob_and_refuses_an_unordered_listing() -> None:
    assert list(_unmatched(["a1", "b2", "c3", "d4"], ["b2", "c0", "d4", "e5"])) == ["a1", "c3"]
    assert list(_unmatched(["a1"], [])) == ["a1"]
    with pytest.raises(OutOfOrder):
        list(_unmatched(["b2", "a1"], []))
    with pytest.raises(OutOfOrder):
        list(_unmatched(["z9"], ["c3", "b2"]))
