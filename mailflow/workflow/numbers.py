"""Case numbers: DERM-YYYY-NNNNNN, counted per year under a row lock; the one look-up of a case
by its number."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.db.models import Case, CaseCounter, utcnow
from mailflow.db.session import ROW_LOCK

PREFIX = "DERM"
CASE_NUMBER = re.compile(rf"^{PREFIX}-\d{{4}}-\d{{6}}$")


def find_case(session: Session, number: str, *, lock: bool = False) -> Case | None:
    """The case with this number as anyone types it (any case, spaces around); None when there
    is none or it is not a case number at all. `lock`: held for update until commit."""
    number = number.strip().upper()
    if not CASE_NUMBER.match(number):
        return None
    query = select(Case).where(Case.number == number)
    locked = query.with_for_update(**ROW_LOCK) if lock else query
    return session.execute(locked).scalar_one_or_none()


def next_case_number(session: Session) -> str:
    year = utcnow().year
    for _ in range(3):
        counter = session.execute(
            select(CaseCounter).where(CaseCounter.year == year).with_for_update(**ROW_LOCK)
        ).scalar_one_or_none()
        if counter is not None:
            counter.last += 1
            session.flush()
            return f"{PREFIX}-{year}-{counter.last:06d}"
        try:  # the first case of a year: another worker may be creating the row too
            with session.begin_nested():
                session.add(CaseCounter(year=year, last=0))
        except IntegrityError:
            continue
    raise RuntimeError("could not allocate a case number")
