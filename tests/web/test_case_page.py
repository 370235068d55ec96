"""The case page: escaped provider text, photos (EXIF-free, no traversal), the timeline, the
report PDF; /healthz and /metrics."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, OutboundMessage
from mailflow.workflow.report_runner import deliver_pending_reports
from tests.support.cases import deliver, send_case
from tests.support.mail import FULL_FORM, case_email
from tests.support.review import ANSWER

XSS = "<script>alert(1)</script>"


def test_provider_text_is_escaped_on_every_page(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    form = FULL_FORM.replace("Symptoms: itch, worse at night", f"Symptoms: {XSS} itch")
    number = send_case(app, people["provider"], form)
    for who in ("admin", "derm", "provider"):
        page = web(people[who]).get(f"/cases/{number}")
        assert page.status_code == 200
        assert XSS not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert web(people["admin"]).get(f"/api/cases/{number}").json()["fields"]["symptoms"].startswith(
        XSS)  # the JSON API returns the data as typed (JSON is not HTML)


def test_the_case_page_shows_fields_photos_timeline_and_audit(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    admin = web(people["admin"])
    page = admin.get(f"/cases/{case_number}").text
    assert "Jane Testpatient" in page and "anterior lower legs" in page
    for position in (1, 2, 3):
        assert f"/cases/{case_number}/photos/{position}/thumb" in page
    assert "Message 1 in: processed" in page  # inbound
    assert "Email out: ack" in page and "Email out: derm_case" in page  # outbound
    assert "SLA clock: start" in page and "How the minutes count" in page
    assert "case.submitted" in page and "case.assigned" in page  # audit trail
    assert "Reassign" in page and "Close the case" in page
    with app.sessions() as session:
        viewed = session.execute(select(AuditEvent).where(
            AuditEvent.action == "case.viewed")).scalar_one()
    assert viewed.actor == people["admin"] and viewed.detail == {"via": "web"}


def test_photos_are_exif_free_jpeg_and_audited(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    derm = web(people["derm"])
    for copy in ("thumb", "photo"):
        response = derm.get(f"/cases/{case_number}/photos/1/{copy}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "private, no-store"
        image = Image.open(io.BytesIO(response.content))
        assert not image.getexif() and "exif" not in image.info
    with app.sessions() as session:
        reads = session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "photo.viewed")).scalars().all()
    assert [(r["position"], r["copy"]) for r in reads] == [(1, "thumb"), (1, "full")]


@pytest.mark.parametrize("path", [
    "/cases/{n}/photos/../../../etc/passwd/thumb",
    "/cases/{n}/photos/..%2F..%2Fetc%2Fpasswd/thumb",
    "/cases/{n}/photos/%2e%2e/thumb",
    "/cases/{n}/photos/-1/thumb",
    "/cases/{n}/photos/1.5/photo",
    "/cases/{n}/photos/9/photo",
    "/cases/{n}/photos/0/thumb",
    "/cases/{n}/photos/1/original",
    "/cases/..%2F..%2Fvar/photos/1/thumb",
    "/cases/DERM-2026-999999/photos/1/thumb",
    "/static/../keys/web.key",
    "/static/..%2Fsecurity.py",
])
def test_photo_path_traversal_finds_nothing(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
    path: str,
) -> None:
    response = web(people["admin"]).get(path.format(n=case_number))
    assert response.status_code == 404, response.text[:200]


def test_the_provider_downloads_the_report_and_nobody_else_does(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    from email import message_from_bytes
    from email.policy import default

    with app.sessions() as session:
        row = session.execute(select(OutboundMessage).where(
            OutboundMessage.kind == "derm_case")).scalar_one()
    notification = message_from_bytes(app.blobs.get(row.blob_sha), policy=default)
    address = notification["Reply-To"].addresses[0].addr_spec
    answer = case_email(people["derm"], address, ANSWER, subject=f"Re: {notification['Subject']}",
                        headers={"In-Reply-To": notification["Message-ID"]})
    deliver(app, answer.as_bytes(), people["derm"], address)
    deliver_pending_reports(app)
    provider = web(people["provider"])
    home = provider.get("/")
    assert f"/cases/{case_number}/report.pdf" in home.text
    pdf = provider.get(f"/cases/{case_number}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("attachment")
    assert web(people["other"]).get(f"/cases/{case_number}/report.pdf").status_code == 403
    page = web(people["admin"]).get(f"/cases/{case_number}").text
    assert "Nummular eczema" in page and "report.pdf?version=1" in page
    assert 'pill-met' in page
    with app.sessions() as session:
        reads = session.execute(select(AuditEvent.actor).where(
            AuditEvent.action == "report.read")).scalars().all()
    assert reads == [people["provider"]]


def test_healthz_and_metrics_need_no_sign_in_and_parse(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    client = web(None)
    assert client.get("/healthz").json() == {"ok": True}
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    cases = {s.labels["state"]: s.value for s in families["mailflow_cases"].samples}
    assert cases["assigned"] == 1 and cases["closed"] == 0
    inbound = {(s.labels["source"], s.labels["status"]): s.value
               for s in families["mailflow_inbound_messages"].samples}
    assert inbound[("smtp", "processed")] == 1 and inbound[("imap", "processed")] == 0
    backlog = families["mailflow_outbox_backlog"].samples[0].value
    assert backlog == 2  # the acknowledgement and the dermatologist's email
    assert families["mailflow_outbox_oldest_age_seconds"].samples[0].value >= 0
    for name in ("mailflow_outbox_dead", "mailflow_sla_warnings", "mailflow_sla_breaches"):
        assert families[name].samples[0].value == 0
    assert "Jane" not in text and "@" not in text and case_number not in text


def test_healthz_reports_an_unreachable_database(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = web(None)

    def broken() -> None:
        raise OSError("down")

    monkeypatch.setattr(app.engine, "connect", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["ok"] is False
