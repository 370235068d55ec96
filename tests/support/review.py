"""The dermatologist's side over real SMTP: open a case, answer it, read the PDF report."""

from __future__ import annotations

import io

from pypdf import PdfReader

from mailflow.app import App
from mailflow.db.models import InboundMessage
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.db import accepted_id, wait_final
from tests.support.mail import FULL_FORM, case_email, reply_to, submit
from tests.support.sink import Delivered, RelaySink

ANSWER = """Diagnosis: Nummular eczema
Differential: Tinea corporis; plaque psoriasis
Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks; emollients
Follow-up: 4 weeks
In-person visit: not needed
Biopsy: no
"""


def send(service: RunningService, who: str, msg, rcpt: str | None = None) -> int:  # type: ignore[no-untyped-def]
    code, text = submit(service.port, who, PASSWORD, msg, rcpt=[rcpt] if rcpt else None)
    assert code == 250, text
    return accepted_id(text)


def answer(service: RunningService, app: App, derm: str, notification: Delivered, body: str,
           photos=()) -> InboundMessage:  # type: ignore[no-untyped-def]
    msg, address = reply_to(notification, derm, body, photos)
    return wait_final(app, send(service, derm, msg, address))


def pdf_text(data: bytes) -> str:
    """The report's words as a reader sees them (wkhtmltopdf's PDFs extract with tabs)."""
    pages = PdfReader(io.BytesIO(data)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


def pdf_of(delivered: Delivered) -> bytes:
    parts = [p for p in delivered.message.iter_attachments()
             if p.get_content_type() == "application/pdf"]
    assert len(parts) == 1
    return parts[0].get_content()


def open_case(service: RunningService, sink: RelaySink, provider: str, derm: str
              ) -> tuple[str, Delivered, Delivered]:
    send(service, provider, case_email(provider, CASES, FULL_FORM, three_photos()))
    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)  # type: ignore[union-attr]
    notification = sink.wait_for(derm)[0]
    assert number in str(notification.message["Subject"])
    return number, ack, notification
