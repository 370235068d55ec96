"""The hash-chained audit log: every PHI read and every change.

Each event's hash covers the previous event's hash and the event's own canonical form, so any
edit, insertion or deletion breaks the chain from that point; `verify` names the first broken
link. Writers lock the single audit_head row, so concurrent writers append in one order.
Details never contain PHI: case numbers, ids, field names, counts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import bus
from mailflow.db.models import AuditEvent, AuditHead, utcnow
from mailflow.db.session import ROW_LOCK

GENESIS = "0" * 64


def _digest(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    case_id: int | None,
    entity: str,
    entity_id: str,
    detail: dict[str, Any],
) -> str:
    canonical = json.dumps(
        {
            "prev": prev_hash,
            "at": at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "case": case_id,
            "entity": entity,
            "entity_id": entity_id,
            "detail": detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def hold_chain(session: Session) -> AuditHead:
    """The chain's head, locked until the caller's transaction ends. Every writer takes it, so
    holding it first makes what is read next include every other writer's committed work."""
    return session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update(**ROW_LOCK)
    ).scalar_one()


def record(
    session: Session,
    action: str,
    *,
    actor: str = "system",
    case_id: int | None = None,
    entity: str = "",
    entity_id: str | int = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction."""
    head = hold_chain(session)
    at = utcnow()
    detail = dict(detail or {})
    event = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        case_id=case_id,
        entity=entity,
        entity_id=str(entity_id),
        detail=detail,
        prev_hash=head.last_hash,
        hash=_digest(head.last_hash, at, actor, action, case_id, entity, str(entity_id), detail),
    )
    session.add(event)
    head.last_hash = event.hash
    head.count += 1
    session.flush()
    bus.note(session, action, case_id)  # announced to listeners once this commits
    return event


class CaseLike(Protocol):
    id: int
    number: str


def case_event(session: Session, case: CaseLike, action: str, *, actor: str = "system",
               detail: dict[str, Any] | None = None) -> AuditEvent:
    """An event about one case (entity "case", named by its number): most events are."""
    return record(session, action, actor=actor, case_id=case.id, entity="case",
                  entity_id=case.number, detail=detail)


@dataclass(frozen=True)
class ChainReport:
    events: int
    ok: bool
    broken_at: int | None = None  # id of the first event whose link does not hold
    problem: str = ""


def verify(session: Session, batch: int = 5000) -> ChainReport:
    prev = GENESIS
    count = 0
    last_id = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.id > last_id)
                .order_by(AuditEvent.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for ev in rows:
            if ev.prev_hash != prev:
                return ChainReport(
                    count,
                    False,
                    ev.id,
                    "its link to the event before it is broken (an event was removed or inserted)",
                )
            expected = _digest(
                prev, ev.at, ev.actor, ev.action, ev.case_id, ev.entity, ev.entity_id, ev.detail
            )
            if expected != ev.hash:
                return ChainReport(
                    count, False, ev.id, "its content does not match its hash (it was altered)"
                )
            prev = ev.hash
            count += 1
            last_id = ev.id
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is not None and (head.last_hash != prev or head.count != count):
        return ChainReport(
            count, False, None, "the chain ends early: events after the last one were removed"
        )
    return ChainReport(count, True)
