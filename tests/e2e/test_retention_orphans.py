"""Files no row names: a process that stopped after storing a blob and before saving the row
that names it leaves encrypted patient data behind. The retention run finds and deletes them
once unused for `[retention] reuse_grace_hours`; the store lists its blobs with their last use.

Everything runs on both blob stores (files, the database) and both databases; the purge runs
as the `mailflow retention run` command, at a fixed date (time-machine).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, text

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import AuditEvent, Case, CaseImage, InboundMessage, MessageStatus
from mailflow.spool import Arrival, spool
from mailflow.store import db_blobs
from mailflow.workflow.orphans import BLOB_COLUMNS
from mailflow.workflow.worker import drain
from tests.conftest import make_config
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.closed import closed_case
from tests.support.mail import FULL_FORM, case_email
from tests.support.sink import RelaySink

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the purge runs then
A_MONTH_AGO = NOW - timedelta(days=30)  # far past the grace (24 hours), far within retention
AN_HOUR_AGO = NOW - timedelta(hours=1)  # within the grace

STORES = pytest.mark.parametrize("config", ["files", "database"], indirect=True)


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path, db_url: str,
           sink: RelaySink) -> Config:
    cfg = make_config(
        tmp_path, db_url, storage={"blobs": request.param},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
    )
    initialise(cfg)
    return cfg


def crashed_spool(app: App, raw: bytes, sender: str) -> str:
    """A message whose blob was stored and whose row never was (the insert fails, as when
    the process dies between the two); the name of the blob left behind."""
    table = InboundMessage.__tablename__
    with app.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_away"))
    try:
        with pytest.raises(Exception, match=table):
            spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=(CASES,),
                               auth_user=sender))
    finally:
        with app.engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table}_away RENAME TO {table}"))
    left = [name for name in app.blobs.files() if not _named(app, name)]
    assert len(left) == 1, left
    return left[0]


def _named(app: App, name: str) -> bool:
    with app.sessions() as session:
        return any(session.execute(select(column).where(column == name)).first()
                   for column in BLOB_COLUMNS)


def named_by_rows(app: App) -> dict[str, set[str]]:
    """Every blob a row names, by column."""
    with app.sessions() as session:
        return {f"{c.class_.__tablename__}.{c.key}": set(session.execute(
            select(c).where(c != "")).scalars()) for c in BLOB_COLUMNS}


def purge(config: Config, *args: str) -> dict[str, Any]:
    with time_machine.travel(NOW, tick=False):
        return cli_json(config, "retention", "run", *args)


@STORES
def test_files_no_row_names_go_after_the_grace_and_every_named_one_stays(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    with time_machine.travel(A_MONTH_AGO, tick=True):
        number = closed_case(app, provider, dermatologists[0], (1, 2, 3))
        lost = case_email(provider, CASES, "The case that was never saved\n" + FULL_FORM)
        old = crashed_spool(app, lost.as_bytes(), provider)
        waiting = spool(app, Arrival("smtp", case_email(provider, CASES, FULL_FORM,
                                                        three_photos()).as_bytes(),
                                     mail_from=provider, rcpt_to=(CASES,),
                                     auth_user=provider))
    with time_machine.travel(AN_HOUR_AGO, tick=True):
        young = app.blobs.put(b"stored an hour ago by a process that stopped")
    rows = named_by_rows(app)
    for column, names in rows.items():  # every kind of row names at least one old blob
        assert names or column == "case_images.review_sha", column
    named = set().union(*rows.values())
    with app.sessions() as session:
        spooled = session.get(InboundMessage, waiting)
        assert spooled is not None and spooled.status == MessageStatus.RECEIVED
        waiting_blob = spooled.blob_sha
    before = {use.name: use.used_at for use in app.blobs.listing()}
    assert before[old] < NOW.timestamp() - 24 * 3600 <= before[young]

    dry = purge(config, "--dry-run")
    with time_machine.travel(NOW, tick=False):
        dry_text = run_cli(config, "retention", "run", "--dry-run").stdout
    assert dry["orphans"] == 1 and dry["cases"] == []
    assert "would delete 1 stored files no email, photo or report uses" in dry_text
    assert set(app.blobs.files()) == set(before), "a dry run deleted something"

    done = purge(config)

    assert done["orphans"] == 1 and done["files_deleted"] == 0
    assert not app.blobs.exists(old)
    assert app.blobs.exists(young), "a file within the grace was deleted"
    assert set(app.blobs.files()) == set(before) - {old}
    assert named <= set(app.blobs.files()) and waiting_blob in named
    with app.sessions() as session:
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "retention.run")).scalar_one()
        assert event.detail["orphans"] == 1
    with time_machine.travel(NOW, tick=False):
        again = run_cli(config, "retention", "run").stdout
    assert "deleted 0 stored files no email" in again and "nothing is past" in again

    # the message spooled a month ago and not yet handled is whole: it becomes its case
    assert drain(app) == 1
    with app.sessions() as session:
        row = session.get(InboundMessage, waiting)
        assert row is not None and row.status == MessageStatus.PROCESSED and row.case_id
        case = session.get(Case, row.case_id)
        assert case is not None and case.number != number
        photos = session.execute(select(CaseImage).where(CaseImage.case_id == case.id))
        assert all(app.blobs.get(img.clean_sha) for img in photos.scalars())


@STORES
def test_the_store_lists_every_blob_in_name_order_with_its_last_use(
    app: App, config: Config, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db_blobs, "LIST_PAGE", 2)  # several pages from a few blobs
    written: dict[str, float] = {}
    for day in range(5):
        at = A_MONTH_AGO + timedelta(days=day)
        with time_machine.travel(at, tick=False):
            written[app.blobs.put(f"blob {day}".encode())] = at.timestamp()
    with time_machine.travel(NOW, tick=False):
        again = app.blobs.put(b"blob 0")  # used again: its last use moves

    listed = list(app.blobs.listing())

    assert [use.name for use in listed] == sorted(written)
    assert {use.name: use.used_at for use in listed} == pytest.approx(
        {**written, again: NOW.timestamp()}, abs=1)


@pytest.mark.parametrize("config", ["files"], indirect=True)  # the database's are transactions
def test_writes_a_stopped_process_left_unfinished_go_and_a_blob_set_aside_comes_back(
    app: App, config: Config, provider: str,
) -> None:
    waiting = spool(app, Arrival("smtp", case_email(provider, CASES, FULL_FORM,
                                                    three_photos()).as_bytes(),
                                 mail_from=provider, rcpt_to=(CASES,), auth_user=provider))
    with app.sessions() as session:
        row = session.get(InboundMessage, waiting)
        assert row is not None
        sha = row.blob_sha
    other = app.blobs.put(b"the same bytes, written afresh after a purge set them aside")
    path = config.storage_dir / "blobs" / sha[:2] / sha[2:4] / sha
    other_path = config.storage_dir / "blobs" / other[:2] / other[2:4] / other
    unfinished = [path.with_name(".tmp-k1l2m3n4"),  # a put stopped while writing
                  path.with_name(f".reseal-{sha}")]  # a rotation stopped before its swap
    unfinished[0].write_bytes(path.read_bytes()[:100])
    unfinished[1].write_bytes(path.read_bytes())
    path.rename(path.with_name(f".purge-{sha}"))  # a purge stopped while deciding
    other_path.with_name(f".purge-{other}").write_bytes(other_path.read_bytes())

    today = cli_json(config, "retention", "run")

    assert today["orphans"] == 0
    assert all(p.exists() for p in unfinished), "a write younger than the grace was deleted"
    assert path.exists() and other_path.exists()
    assert not list(path.parent.glob(".purge-*")) and not list(other_path.parent.glob(".purge-*"))

    later = datetime.now(UTC) + timedelta(days=2)  # the grace (24 hours) is over
    with time_machine.travel(later, tick=False):
        dry = cli_json(config, "retention", "run", "--dry-run")
        assert dry["orphans"] == 3 and all(p.exists() for p in unfinished)  # and `other`
        done = run_cli(config, "retention", "run").stdout
    assert "deleted 3 stored files no email, photo or report uses" in done
    assert not any(p.exists() for p in unfinished) and not other_path.exists()
    assert app.blobs.exists(sha)
    assert drain(app) == 1  # the message waiting all along becomes its case
    with app.sessions() as session:
        row = session.get(InboundMessage, waiting)
        assert row is not None and row.status == MessageStatus.PROCESSED and row.case_id
