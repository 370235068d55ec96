"""Case numbers: DERM-YYYY-NNNNNN, counted per year under a row lock."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.db.models import CaseCounter, utcnow

PREFIX = "DERM"


def next_case_number(session: Session) -> str:
    year = utcnow().year
    for _ in range(3):
        counter = session.execute(
            select(CaseCounter).where(CaseCounter.year == year).with_for_update()
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
