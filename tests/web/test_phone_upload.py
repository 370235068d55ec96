"""Issue #14 item 3, through the web door as a phone uses it (the browser test drives the page
itself): the acknowledgement's link, the password it asks for, photos sent in pieces and
resumed, the case completed by the worker exactly as a reply by email would, EXIF gone from
the stored copy; and the links that must not open: expired, changed, another account's."""

from __future__ import annotations

import email
import io
import re
from collections.abc import Callable
from datetime import timedelta
from email.policy import default as default_policy
from pathlib import Path

import pytest
import time_machine
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import AuditEvent, Case, CaseImage, InboundMessage, OutboundMessage, utcnow
from mailflow.db.upload_models import Upload, UploadChunk
from mailflow.parse.views import REQUIRED_VIEWS
from mailflow.workflow.worker import drain
from tests.conftest import PASSWORD, make_config
from tests.support.cases import CASES, deliver
from tests.support.images import gps_exif, skin_photo
from tests.support.mail import FULL_FORM, case_email
from tests.support.sink import RelaySink
from tests.support.web import csrf_of

PIECE = 64 * 1024
LINK = re.compile(r"http://[^/\s]+(/photos/[A-Za-z0-9_-]+)")
CSRF_META = re.compile(r'data-csrf="([^"]+)"')


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    """Pieces of 64 KiB: a test photo goes up in several; pieces kept an hour (a sign-in
    lasts longer, so the expiry test stays signed in)."""
    cfg = make_config(tmp_path, db_url, smtp={"rate_per_minute": 1000},
                      outbound={"relay_host": "127.0.0.1", "relay_port": sink.port},
                      uploads={"chunk_bytes": PIECE, "partial_hours": 1})
    initialise(cfg)
    return cfg


def _incomplete_case(app: App, provider: str) -> str:
    """A case emailed with the form and no photos: kept as incomplete, acknowledged."""
    deliver(app, case_email(provider, CASES, FULL_FORM).as_bytes(), provider, CASES)
    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.state == "incomplete"
        return case.number


def _acks(app: App) -> list[email.message.EmailMessage]:
    with app.sessions() as session:
        rows = session.execute(select(OutboundMessage).where(
            OutboundMessage.kind.in_(("ack", "ack_incomplete"))).order_by(OutboundMessage.id)
        ).scalars().all()
        return [email.message_from_bytes(app.blobs.get(r.blob_sha), policy=default_policy)
                for r in rows]


def _text(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def _link(app: App) -> str:
    found = LINK.search(_text(_acks(app)[-1]))
    assert found, "no photo link in the acknowledgement"
    return found.group(1)


def _upload(client: TestClient, csrf: str, field: str, data: bytes, case: str | None,
            name: str = "IMG_0001.jpg", stop_after: int | None = None) -> str:
    """One photo sent in PIECE-sized pieces; with stop_after, only that many (a dropped
    connection): the upload's id."""
    headers = {"X-CSRF-Token": csrf}
    started = client.post("/uploads", json={"field": field, "name": name, "type": "image/jpeg",
                                            "size": len(data), "case": case}, headers=headers)
    assert started.status_code == 201, started.text
    upload_id = started.json()["id"]
    _pieces(client, csrf, upload_id, data, 0, stop_after)
    return str(upload_id)


def _pieces(client: TestClient, csrf: str, upload_id: str, data: bytes, start: int,
            stop_after: int | None = None) -> None:
    for sent, offset in enumerate(range(start, len(data), PIECE)):
        if stop_after is not None and sent == stop_after:
            return
        answer = client.put(f"/uploads/{upload_id}", content=data[offset:offset + PIECE],
                            headers={"X-CSRF-Token": csrf, "Upload-Offset": str(offset)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["received"] == min(offset + PIECE, len(data))


def test_from_the_link_three_photos_in_pieces_complete_the_case(
        app: App, people: dict[str, str], web: Callable[[str | None], TestClient]) -> None:
    number = _incomplete_case(app, people["provider"])
    path = _link(app)
    assert "You will need your password" in _text(_acks(app)[-1])

    phone = web(None)
    page = phone.get(path)
    assert page.status_code == 200 and "enter your mailflow password" in page.text
    wrong = phone.post(path, data={"password": "not it", "csrf_token": csrf_of(page.text)})
    assert wrong.status_code == 400 and "That password did not work" in wrong.text
    right = phone.post(path, data={"password": PASSWORD, "csrf_token": csrf_of(wrong.text)},
                       follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == path
    page = phone.get(path)
    assert page.status_code == 200, page.text
    assert page.text.count('accept="image/*" capture') == 4  # three views and an extra
    assert "/static/guide-close-up.svg" in page.text
    csrf = CSRF_META.search(page.text).group(1)  # type: ignore[union-attr]

    tagged = skin_photo(seed=7, exif=gps_exif())
    assert len(tagged) > 3 * PIECE
    first = _upload(phone, csrf, "distribution", tagged, number, stop_after=2)
    # the connection dropped: the page asks what was kept, and goes on from there
    kept = phone.get(f"/uploads/{first}", headers={"X-CSRF-Token": csrf}).json()["received"]
    assert kept == 2 * PIECE
    again = phone.put(f"/uploads/{first}", content=tagged[PIECE:2 * PIECE],
                      headers={"X-CSRF-Token": csrf, "Upload-Offset": str(PIECE)})
    assert again.json()["received"] == 2 * PIECE  # a piece sent twice is kept once
    gap = phone.put(f"/uploads/{first}", content=tagged[3 * PIECE:4 * PIECE],
                    headers={"X-CSRF-Token": csrf, "Upload-Offset": str(3 * PIECE)})
    assert gap.status_code == 409
    _pieces(phone, csrf, first, tagged, kept)
    others = [_upload(phone, csrf, field, skin_photo(seed=seed), number, name)
              for field, seed, name in (("close-up", 8, "IMG_8.jpg"),
                                        ("oblique", 9, "IMG_9\r\nBcc: x@y.test.jpg"))]
    # nobody else's page can send them
    intruder = web(people["other"])
    home = intruder.get("/")
    stolen = intruder.get(f"/uploads/{first}",
                          headers={"X-CSRF-Token": CSRF_META.search(
                              intruder.get("/new-case").text).group(1)})  # type: ignore[union-attr]
    assert home.status_code == 200 and stolen.status_code == 409

    sent = phone.post(f"{path}/send", data={"csrf_token": csrf, "upload": [first, *others]},
                      follow_redirects=False)
    assert sent.status_code == 303, sent.text
    waiting = phone.get(sent.headers["location"])
    assert "Checking your photos" in waiting.text
    drain(app)
    done = phone.get(sent.headers["location"])
    assert f"Case {number} is complete" in done.text

    with app.sessions() as session:
        case = session.execute(select(Case)).scalar_one()
        assert case.state in ("submitted", "assigned") and case.missing == []
        images = session.execute(select(CaseImage).order_by(CaseImage.position)).scalars().all()
        assert [i.view for i in images] == list(REQUIRED_VIEWS)
        assert images[2].filename == "IMG_9Bcc: x@y.test.jpg"  # a name is no header
        row = session.get(InboundMessage, images[0].inbound_message_id)
        assert row is not None and row.source == "web" and row.route == "completion"
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
        assert session.scalar(select(func.count()).select_from(UploadChunk)) == 0
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert "upload.sent" in actions
    assert "web.login_failed" in actions  # the wrong password counted in the sign-in lockout
    stored = Image.open(io.BytesIO(app.blobs.get(images[0].clean_sha)))
    assert Image.open(io.BytesIO(tagged)).getexif().get_ifd(0x8825)  # it had GPS ...
    assert not stored.getexif().get_ifd(0x8825) and 0x010F not in stored.getexif()  # ... gone
    last = _acks(app)[-1]
    assert last["To"] == people["provider"] and "is now complete" in _text(last)


def test_links_that_must_not_open(app: App, people: dict[str, str],
                                  web: Callable[[str | None], TestClient]) -> None:
    number = _incomplete_case(app, people["provider"])
    path = _link(app)
    token = path.rsplit("/", 1)[1]
    anyone = web(None)
    changed = anyone.get(f"/photos/{token[:-2]}{'A' if token[-2] != 'A' else 'B'}{token[-1]}")
    assert changed.status_code == 400 and "This link does not work" in changed.text
    cut = anyone.get(f"/photos/{token[:20]}")
    assert cut.status_code == 400

    # from a mail app the strict session cookie stays behind: one step on this site first
    bounce = anyone.get(path, headers={"Sec-Fetch-Site": "cross-site"})
    assert f'http-equiv="refresh" content="0;url={path}"' in bounce.text

    other = web(people["other"])
    theirs = other.get(path)
    assert theirs.status_code == 403 and "for another account" in theirs.text

    with time_machine.travel(utcnow() + timedelta(days=7, hours=1)):
        old = web(None).get(path)
    assert old.status_code == 410 and "This link has expired" in old.text
    assert "with the photos attached. Our answer to that email has a new link" in old.text

    with app.sessions() as session:
        refusals = session.execute(select(AuditEvent).where(
            AuditEvent.action == "photos.link_refused").order_by(AuditEvent.id)).scalars().all()
        why = [e.detail["why"] for e in refusals]
        assert why == ["invalid", "invalid", "other-account", "expired"]
        assert refusals[2].entity_id == number


def test_pieces_never_sent_expire(app: App, people: dict[str, str],
                                  web: Callable[[str | None], TestClient]) -> None:
    provider = web(people["provider"])
    csrf = CSRF_META.search(provider.get("/new-case").text).group(1)  # type: ignore[union-attr]
    data = skin_photo(seed=5)
    left = _upload(provider, csrf, "distribution", data, None, stop_after=1)
    later = utcnow() + timedelta(hours=app.config.uploads.partial_hours, minutes=1)
    with time_machine.travel(later):
        gone = provider.get(f"/uploads/{left}", headers={"X-CSRF-Token": csrf})
        assert gone.status_code == 409 and "no longer here" in gone.json()["detail"]
        _upload(provider, csrf, "distribution", data, None, stop_after=0)  # sweeps as it starts
    with app.sessions() as session:
        assert session.get(Upload, left) is None
        assert session.scalar(select(func.count()).select_from(UploadChunk)) == 0
