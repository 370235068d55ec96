"""Blobs no row names: the retention run's second sweep (decisions.md, 2026-12-01).

A blob is put before the row that names it commits; most puts are outside that row's
transaction (the spool, the pool processes' photos, any put on the file store). A process that
stops in between leaves a blob no row will ever name, which no purge of rows would reach:
encrypted patient data kept for ever. Retention finds them here: every blob in the store,
last used before the grace cutoff, that no row of any kind names (purged rows included: their
blobs are the first sweep's, retention.py), and deletes them with `Blobs.discard`, which keeps
a blob put again meanwhile.

The store is read in name order (a folder or a page at a time) and merged with every named
blob, read in the same order from the database as one stream; the few names left over are
checked once more, row by row, just before they are reported. Nothing is held whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy import ColumnElement, select, union
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailflow.app import App
from mailflow.db.models import CaseImage, Consult, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)

# Every column that names a blob, in every table. tests/unit/test_blob_columns.py fails when
# a model gains a column of a blob name's size that is neither here nor known to be no blob.
BLOB_COLUMNS: tuple[InstrumentedAttribute[str], ...] = (
    InboundMessage.blob_sha,  # the raw message, from the moment it is spooled
    OutboundMessage.blob_sha,  # an email as sent
    Consult.pdf_sha,  # the report as issued ("" until then)
    CaseImage.original_sha,
    CaseImage.clean_sha,
    CaseImage.review_sha,  # "" when the photo needed no review copy
    CaseImage.thumbnail_sha,
)
CHUNK = 500  # names checked against the rows at once
STREAM = 1000  # named blobs read from the database at a time


class OutOfOrder(Exception):
    """The store or the database did not list names in order: nothing can be called unnamed."""


def named(session: Session, names: list[str], kept_only: bool = False) -> set[str]:
    """Which of these names a row names (`kept_only`: a row the purge has not marked)."""
    found: set[str] = set()
    for column in BLOB_COLUMNS:
        query = select(column).where(column.in_(names))
        purged_at = getattr(column.class_, "purged_at", None)
        if kept_only and purged_at is not None:
            query = query.where(purged_at.is_(None))
        found.update(session.execute(query).scalars())
    return found


def find(app: App, used_before: float) -> list[str]:
    """The blobs named by no row and last used before `used_before` (a timestamp)."""
    with app.sessions() as session:
        candidates = list(_unmatched(_old_names(app, used_before), _named_in_order(session)))
    orphans: list[str] = []
    for chunk in chunks(candidates):  # once more, by name: rows committed during the merge
        with app.sessions() as session:
            known = named(session, chunk)
        orphans += [name for name in chunk if name not in known]
    log.debug("orphan blobs: %s", orphans)
    return orphans


def _old_names(app: App, used_before: float) -> Iterator[str]:
    for use in app.blobs.listing():
        if use.used_at < used_before:
            yield use.name


def _named_in_order(session: Session) -> Iterator[str]:
    every = union(*(select(column.label("name")) for column in BLOB_COLUMNS)).subquery()
    name: ColumnElement[str] = every.c.name
    if session.get_bind().dialect.name == "postgresql":
        name = name.collate("C")  # the byte order Python compares in (SQLite's own)
    query = select(every.c.name).where(every.c.name != "").order_by(name)
    yield from session.execute(query.execution_options(yield_per=STREAM)).scalars()


def _unmatched(stored: Iterable[str], named_ones: Iterable[str]) -> Iterator[str]:
    """The names in `stored` not in `named_ones`; both ascending (checked as they are read)."""
    named_iter = iter(named_ones)
    current = next(named_iter, None)
    last_stored = last_named = ""
    for name in stored:
        if name < last_stored:
            raise OutOfOrder("the blob store listed names out of order")
        last_stored = name
        while current is not None and current < name:
            if current < last_named:
                raise OutOfOrder("the database listed blob names out of order")
            last_named, current = current, next(named_iter, None)
        if current != name:
            yield name


def chunks(items: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk
