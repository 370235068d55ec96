"""Issue #11 item 10: raw messages and photos are purged once past their retention.

Cases are made through the spool and the worker at dates in the past (time-machine), answered
by the dermatologist, reported, delivered to the relay sink and closed; the purge then runs as
the `mailflow` command at today's date.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import (
    AuditEvent,
    Case,
    CaseImage,
    Consult,
    InboundMessage,
    OutboundMessage,
)
from mailflow.outbound.delivery import deliver_due
from tests.conftest import make_config
from tests.support.cases import deliver
from tests.support.cli import cli_json, run_cli
from tests.support.closed import closed_case
from tests.support.mail import case_email
from tests.support.sink import RelaySink

HELP = "help@derm.localhost"
LONG_AGO = datetime(2019, 6, 4, 15, 0, tzinfo=UTC)  # closed > 6 years before today (2026)
RECENTLY = datetime(2024, 6, 4, 15, 0, tzinfo=UTC)  # closed < 6 years before today


def blobs_of(app: App, number: str) -> dict[str, set[str]]:
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        images = session.execute(select(CaseImage).where(CaseImage.case_id == case.id)).scalars()
        photo = {sha for i in images for sha in (i.original_sha, i.clean_sha, i.thumbnail_sha,
                                                 i.review_sha) if sha}
        raw = set(session.execute(select(InboundMessage.blob_sha)
                                  .where(InboundMessage.case_id == case.id)).scalars())
        raw |= set(session.execute(select(OutboundMessage.blob_sha)
                                   .where(OutboundMessage.case_id == case.id)).scalars())
        pdfs = set(session.execute(select(Consult.pdf_sha)
                                   .where(Consult.case_id == case.id)).scalars())
    return {"photos": photo, "raw": raw, "pdfs": pdfs}


def purged_rows(app: App) -> int:
    with app.sessions() as session:
        return sum(session.execute(select(func.count()).select_from(model)
                                   .where(model.purged_at.is_not(None))).scalar_one()
                   for model in (InboundMessage, OutboundMessage, CaseImage))


def two_cases(app: App, provider: str, derm: str) -> tuple[str, str]:
    """One closed long ago and one recently; they share their first photo (sent twice)."""
    with time_machine.travel(LONG_AGO, tick=True):
        old = closed_case(app, provider, derm, (1, 2, 3))
        deliver(app, case_email(provider, HELP, "").as_bytes(), provider, HELP)  # on no case
        while deliver_due(app):
            pass
    with time_machine.travel(RECENTLY, tick=True):
        new = closed_case(app, provider, derm, (1, 4, 5))
    return old, new


# the purge's two hard cases also run with the blobs in the database ([storage] blobs)
BOTH_STORES = pytest.mark.parametrize("config", ["files", "database"], indirect=True)


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path, db_url: str,
           sink: RelaySink) -> Config:
    cfg = make_config(
        tmp_path, db_url, storage={"blobs": getattr(request, "param", "files")},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
    )
    initialise(cfg)
    return cfg


@BOTH_STORES
def test_expired_messages_and_photos_go_newer_and_shared_ones_stay(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    old, new = two_cases(app, provider, dermatologists[0])
    old_blobs, new_blobs = blobs_of(app, old), blobs_of(app, new)
    shared = old_blobs["photos"] & new_blobs["photos"]
    assert shared, "the photo sent twice is one stored file"

    done = cli_json(config, "retention", "run")

    assert [c["number"] for c in done["cases"]] == [old]
    assert done["cases"][0]["photos"] == 3 and done["cases"][0]["raw_messages"] >= 2
    assert done["caseless_messages"] >= 2  # the help request and its answer
    for sha in (old_blobs["photos"] - shared) | old_blobs["raw"]:
        assert not app.blobs.exists(sha), "an expired file is still on disk"
    for sha in shared | old_blobs["pdfs"]:
        assert app.blobs.exists(sha), "a file still needed was deleted"
    for kind in ("photos", "raw", "pdfs"):
        assert all(app.blobs.exists(sha) for sha in new_blobs[kind]), kind
    with app.sessions() as session:
        old_case = session.execute(select(Case).where(Case.number == old)).scalar_one()
        rows = session.execute(select(CaseImage).where(CaseImage.case_id == old_case.id))
        assert all(img.purged_at is not None for img in rows.scalars())
        assert session.execute(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.case_id == old_case.id, InboundMessage.purged_at.is_(None))
        ).scalar_one() == 0
        new_case = session.execute(select(Case).where(Case.number == new)).scalar_one()
        assert session.execute(select(func.count()).select_from(CaseImage).where(
            CaseImage.case_id == new_case.id, CaseImage.purged_at.is_not(None))).scalar_one() == 0
        event = session.execute(select(AuditEvent).where(
            AuditEvent.action == "retention.purged", AuditEvent.case_id == old_case.id)
        ).scalar_one()
        assert event.entity_id == old
        assert set(event.detail["kinds"]) == {"raw_messages", "sent_messages", "photos"}
        assert "Testpatient" not in json.dumps(event.detail)
    assert "intact" in run_cli(config, "audit", "verify").stdout
    # the clinical record is whole: the report is still there to read
    out = config.base_dir / "old.pdf"
    run_cli(config, "cases", "report", old, "--out", str(out))
    assert out.read_bytes().startswith(b"%PDF")
    again = cli_json(config, "retention", "run")
    assert again["cases"] == [] and again["files_deleted"] == 0


def test_a_dry_run_says_what_would_go_and_changes_nothing(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    old, new = two_cases(app, provider, dermatologists[0])
    files = set().union(*blobs_of(app, old).values(), *blobs_of(app, new).values())
    with app.sessions() as session:
        events = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()

    dry = run_cli(config, "retention", "run", "--dry-run").stdout

    assert f"{old}: would purge" in dry and new not in dry
    assert "would delete" in dry
    assert all(app.blobs.exists(sha) for sha in files)
    assert purged_rows(app) == 0
    with app.sessions() as session:
        assert session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == events
    as_json = cli_json(config, "retention", "run", "--dry-run")
    assert as_json["dry_run"] and [c["number"] for c in as_json["cases"]] == [old]
    assert as_json["files_deleted"] > 0


@BOTH_STORES
def test_the_same_bytes_arriving_during_a_purge_are_not_lost(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    """A file just written again (the same photo in a new message) survives its purge."""
    with time_machine.travel(LONG_AGO, tick=True):
        old = closed_case(app, provider, dermatologists[0], (1, 2, 3))
    sha = sorted(blobs_of(app, old)["photos"])[0]
    data_before = app.blobs.get(sha)
    # the worker of a new message stores the same bytes; its row is not committed yet
    assert app.blobs.put(data_before) == sha
    run_cli(config, "retention", "run")
    assert app.blobs.exists(sha) and app.blobs.get(sha) == data_before
    assert not all(app.blobs.exists(s) for s in blobs_of(app, old)["photos"])


def test_the_scheduler_purges_daily(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    from datetime import timedelta

    from apscheduler.triggers.cron import CronTrigger

    from mailflow.db.models import utcnow
    from mailflow.workflow.scheduler import SlaScheduler, retention_job

    number = closed_case(app, provider, dermatologists[0], (1, 2, 3))
    scheduler = SlaScheduler(app, key=f"retention-{number}")
    scheduler.start()
    try:
        job = scheduler.scheduler.get_job("retention-daily")
        assert isinstance(job.trigger, CronTrigger)
        assert "hour='3'" in str(job.trigger) and "minute='30'" in str(job.trigger)
        assert purged_rows(app) == 0
        with time_machine.travel(utcnow() + timedelta(days=6 * 366), tick=True):
            retention_job(scheduler.key)
    finally:
        scheduler.stop()
    assert purged_rows(app) > 0
    assert not any(app.blobs.exists(sha) for sha in blobs_of(app, number)["photos"])
