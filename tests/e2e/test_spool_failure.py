"""DESIGN §3: 250 only once the message is stored. When the store fails at the moment of DATA
(the blob folder or the database cannot be written), the SMTP door answers 451, so the client
keeps the message and tries again; it never answers 250 for a message it does not have."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from mailflow.app import App
from mailflow.db.models import InboundMessage
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email, submit

TABLE = InboundMessage.__tablename__
AWAY = f"{TABLE}_away"


@pytest.fixture
def door(app: App, process_pool: AnalysisPool) -> Iterator[RunningService]:
    """The SMTP door alone: nothing but the door touches what it stores."""
    running = RunningService(app, process_pool, ("smtp",)).start()
    yield running
    running.stop()


def stored(app: App) -> int:
    with app.sessions() as session:
        return session.execute(select(func.count()).select_from(InboundMessage)).scalar_one()


def send_case(door: RunningService, provider: str) -> tuple[int, bytes]:
    return submit(door.port, provider, PASSWORD,
                  case_email(provider, CASES, FULL_FORM, three_photos()))


def rename_table(app: App, old: str, new: str) -> None:
    with app.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_blob_folder_that_cannot_be_written_answers_451_not_250(
    door: RunningService, app: App, provider: str
) -> None:
    blobs = app.blobs.root
    away = blobs.with_name("blobs-away")
    blobs.rename(away)
    blobs.write_bytes(b"")  # a file where the folder should be: no write can succeed, even as root
    try:
        code, reply = send_case(door, provider)
        assert (code, reply.decode()[:20]) == (451, "4.3.0 Temporary prob"), reply
        assert stored(app) == 0
    finally:
        blobs.unlink()
        away.rename(blobs)
    code, reply = send_case(door, provider)  # the client's retry, once storage is back
    assert code == 250, reply
    assert stored(app) == 1


def test_a_database_that_cannot_be_written_answers_451_not_250(
    door: RunningService, app: App, provider: str
) -> None:
    rename_table(app, TABLE, AWAY)  # the insert of the message's row fails
    try:
        code, reply = send_case(door, provider)
        assert (code, reply.decode()[:20]) == (451, "4.3.0 Temporary prob"), reply
    finally:
        rename_table(app, AWAY, TABLE)
    assert stored(app) == 0  # no row: nothing was half-accepted
    code, reply = send_case(door, provider)
    assert code == 250, reply
    assert stored(app) == 1

