"""What a phone page may make the server keep (review of issue #14 item 3): a provider's
photos waiting to be sent are bounded ([uploads] max_pending_bytes), and one send is never a
larger email than the SMTP door takes ([smtp] max_message_bytes): refused, with the photos
kept so fewer can be sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import InboundMessage, utcnow
from mailflow.db.upload_models import Upload, UploadChunk
from mailflow.workflow.worker import sweep
from tests.conftest import make_config
from tests.support.sink import RelaySink
from tests.web.test_phone_upload import CSRF_META, PIECE, _upload

PHOTO = bytes(range(256)) * 700  # 175 KiB: three pieces; its content does not matter here


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    """Room for three such photos waiting; an email of at most 600 KiB (two of them base64'd
    fit, three do not)."""
    cfg = make_config(tmp_path, db_url, smtp={"max_message_bytes": 600 * 1024},
                      outbound={"relay_host": "127.0.0.1", "relay_port": sink.port},
                      uploads={"chunk_bytes": PIECE, "max_pending_bytes": 3 * len(PHOTO)})
    initialise(cfg)
    return cfg


def _csrf(client: TestClient) -> str:
    return CSRF_META.search(client.get("/new-case").text).group(1)  # type: ignore[union-attr]


def test_photos_waiting_and_one_send_are_bounded(
        app: App, people: dict[str, str], web: Callable[[str | None], TestClient]) -> None:
    provider = web(people["provider"])
    csrf = _csrf(provider)
    kept = [_upload(provider, csrf, "additional", PHOTO, None, f"IMG_{n}.jpg") for n in range(3)]
    # a fourth is refused: nothing may let a client fill the disk with photos never sent
    fourth = provider.post("/uploads", json={"field": "additional", "name": "IMG_4.jpg",
                                             "type": "image/jpeg", "size": len(PHOTO)},
                           headers={"X-CSRF-Token": csrf})
    assert fourth.status_code == 409 and "waiting to be sent" in fourth.json()["detail"]
    tiny = provider.post("/uploads", json={"field": "additional", "name": "x.jpg",
                                           "type": "image/jpeg", "size": 1},
                         headers={"X-CSRF-Token": csrf})
    assert tiny.status_code == 409  # a tiny one still costs a row and a piece

    # three together would be a bigger email than the SMTP door takes: refused, all kept
    form = {"csrf_token": csrf, "upload": kept}
    refused = provider.post("/new-case", data=form)
    assert refused.status_code == 409 and "too large to send together" in refused.text
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 3
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0
    sent = provider.post("/new-case", data={**form, "upload": kept[:2]}, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    with app.sessions() as session:
        row = session.execute(select(InboundMessage)).scalar_one()
        assert row.source == "web" and row.size <= app.config.smtp.max_message_bytes
        assert session.scalar(select(func.count()).select_from(Upload)) == 1


def test_pieces_never_sent_are_deleted_without_another_upload(
        app: App, people: dict[str, str], web: Callable[[str | None], TestClient]) -> None:
    """README: pieces never sent are deleted after [uploads] partial_hours, also when nobody
    starts another upload (the worker's housekeeping)."""
    provider = web(people["provider"])
    _upload(provider, _csrf(provider), "distribution", PHOTO, None, stop_after=1)
    with time_machine.travel(utcnow() + timedelta(hours=app.config.uploads.partial_hours,
                                                  minutes=1)):
        sweep(app)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
        assert session.scalar(select(func.count()).select_from(UploadChunk)) == 0
