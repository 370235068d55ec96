"""Issue #3 item 1: who gets a case, and when (time moved with time-machine, never slept)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case, OutboundMessage
from mailflow.sla.roster import RosterError, load_roster
from mailflow.workflow.worker import sweep
from tests.support.images import skin_photo
from tests.support.roster import ET, new_case, roster_app

__all__ = ["roster_app"]  # a fixture, from tests/support/roster.py


def assignees(app: App) -> list[tuple[str, str | None]]:
    with app.sessions() as session:
        return [(c.provider.email, c.assignee.email if c.assignee else None)
                for c in session.execute(select(Case).order_by(Case.id)).scalars()]


def test_a_case_sent_on_saturday_waits_for_mondays_opening(roster_app: App) -> None:
    with time_machine.travel(datetime(2026, 11, 28, 10, 0, tzinfo=ET), tick=False):
        new_case(roster_app, "doc.ny@clinic.test", 1)
        assert assignees(roster_app) == [("doc.ny@clinic.test", None)]
        assert sweep(roster_app) == 0
    with time_machine.travel(datetime(2026, 11, 30, 8, 59, tzinfo=ET), tick=False):
        assert sweep(roster_app) == 0
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        assert sweep(roster_app) == 1
    assert assignees(roster_app) == [("doc.ny@clinic.test", "ny.derm@derm.localhost")]
    with roster_app.sessions() as session:
        kinds = session.execute(select(OutboundMessage.kind, OutboundMessage.to_addr)).all()
    assert ("derm_case", "ny.derm@derm.localhost") in kinds


def test_licence_state_lunch_break_and_max_open_are_respected(roster_app: App) -> None:
    with time_machine.travel(datetime(2026, 11, 30, 12, 30, tzinfo=ET), tick=False):
        new_case(roster_app, "doc.nj@clinic.test", 1)  # NJ derm at lunch
        new_case(roster_app, "doc.ny@clinic.test", 2)
        new_case(roster_app, "doc.ny@clinic.test", 3)  # NY derm already has max_open = 1
        new_case(roster_app, "doc.ca@clinic.test", 4)  # nobody licensed in CA
    assert assignees(roster_app) == [
        ("doc.nj@clinic.test", None), ("doc.ny@clinic.test", "ny.derm@derm.localhost"),
        ("doc.ny@clinic.test", None), ("doc.ca@clinic.test", None)]
    with time_machine.travel(datetime(2026, 11, 30, 13, 0, tzinfo=ET), tick=False):
        assert sweep(roster_app) == 1
    assert assignees(roster_app)[0] == ("doc.nj@clinic.test", "nj.derm@derm.localhost")


def test_a_bad_roster_stops_start_up_naming_the_entry(tmp_path: Path) -> None:
    for text, words in [
        ('[[dermatologist]]\nemail="a@b.test"\n[dermatologist.hours]\nmon=["9-17"]\n',
         "dermatologist 1 mon"),
        ('[[dermatologist]]\nemail="a@b.test"\n[dermatologist.hours]\nfunday=["09:00-17:00"]\n',
         "'funday'"),
        ('[[dermatologist]]\nemail="a@b.test"\nmax_open=0\n', "max_open"),
        ('[[dermatologist]]\nemial="a@b.test"\n', "unknown keys emial"),
        ('timezone="Mars/Olympus"\n', "unknown timezone"),
    ]:
        path = tmp_path / "roster.toml"
        path.write_text(text)
        with pytest.raises(RosterError, match=words):
            load_roster(path)


def test_one_broken_case_does_not_hold_up_the_sweep(roster_app: App) -> None:
    from mailflow.db.models import CaseImage

    with time_machine.travel(datetime(2026, 11, 28, 10, 0, tzinfo=ET), tick=False):
        new_case(roster_app, "doc.nj@clinic.test", 1,
                 [(f"p{i}.jpg", skin_photo(seed=40 + i)) for i in range(3)])
        new_case(roster_app, "doc.nj@clinic.test", 2)
    with roster_app.sessions() as session:
        first_image = session.execute(
            select(CaseImage).where(CaseImage.case_id == 1).order_by(CaseImage.position)
        ).scalars().first()
        assert first_image is not None
    next(roster_app.config.storage_dir.joinpath("blobs").rglob(first_image.review_sha)).unlink()
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=ET), tick=False):
        assert sweep(roster_app) == 1  # the second case goes; the first waits for an admin
    assert assignees(roster_app) == [("doc.nj@clinic.test", None),
                                     ("doc.nj@clinic.test", "nj.derm@derm.localhost")]
