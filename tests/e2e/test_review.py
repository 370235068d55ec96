"""Issue #3: the dermatologist's review by email, the PDF consult report, the conversation."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD, RunningService
from tests.e2e.test_case_intake import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import accepted_id, wait_final
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to, submit
from tests.support.sink import Delivered, RelaySink

ANSWER = """Diagnosis: Nummular eczema
Differential: Tinea corporis; plaque psoriasis
Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks; emollients
Follow-up: 4 weeks
In-person visit: not needed
Biopsy: no
"""
CASE_NUMBER = re.compile(r"DERM-\d{4}-\d{6}")


def send(service: RunningService, who: str, msg, rcpt: str | None = None) -> int:  # type: ignore[no-untyped-def]
    code, text = submit(service.port, who, PASSWORD, msg, rcpt=[rcpt] if rcpt else None)
    assert code == 250, text
    return accepted_id(text)


def answer(service: RunningService, app: App, derm: str, notification: Delivered, body: str,
           photos=()) -> object:  # type: ignore[no-untyped-def]
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
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    notification = sink.wait_for(derm)[0]
    assert number in str(notification.message["Subject"])
    return number, ack, notification


def test_a_case_goes_to_the_dermatologist_and_the_answer_comes_back_as_a_pdf(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], tmp_path: Path,
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    text = notification.text
    assert "Jane Testpatient" in text and "anterior lower legs" in text and "Diagnosis:" in text
    photos = [p for p in notification.message.iter_attachments()
              if p.get_content_type() == "image/jpeg"]
    assert [p.get_filename() for p in photos] == [
        "1-distribution.jpg", "2-close-up-anterior-posterior.jpg", "3-close-up-oblique-lateral.jpg"]
    for part in photos:
        image = Image.open(io.BytesIO(part.get_content()))
        assert max(image.size) <= 2048 and not image.getexif()
    assert notification.message["Reply-To"].addresses[0].addr_spec.startswith(
        f"case+{number.lower()}.")

    row = answer(service, app, derm, notification, ANSWER)
    assert row.status == MessageStatus.PROCESSED and row.route == "consult"
    consult = [m for m in sink.wait_for(provider, count=2) if "consult report" in
               str(m.message["Subject"])][0]
    assert "Nummular eczema" in consult.text and "Manage in primary care" in consult.text
    report = pdf_text(pdf_of(consult))
    for words in (number, "Nummular eczema", "Triamcinolone 0.1% ointment", "Jane Testpatient",
                  "Dr Derm One"):
        assert words in report, words
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "reviewed"
    assert shown["consults"][0]["answer"]["diagnosis"] == "Nummular eczema"
    out = tmp_path / "printed.pdf"
    run_cli(config, "cases", "report", number, "--out", str(out))
    assert "Nummular eczema" in pdf_text(out.read_bytes())


def test_an_answer_without_a_diagnosis_is_refused_and_named(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    row = answer(service, app, derm, notification, "Plan: emollients twice daily")
    assert row.route == "answer-incomplete"
    refusal = sink.wait_for(derm, count=2)[1]
    assert "Diagnosis" in str(refusal.message["Subject"])
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    assert len(sink.to(provider)) == 1  # only the acknowledgement: nothing half-sent


def test_more_info_pauses_and_the_providers_reply_resumes(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, "More info: Is the rash itchy at night?")
    assert cli_json(config, "cases", "show", number)["state"] == "needs_info"
    question = sink.wait_for(provider, count=2)[1]
    assert "Is the rash itchy at night?" in question.text
    msg, address = reply_to(question, provider, "Yes, mostly at night.",
                            [("new-lesion.jpg", skin_photo(seed=11))])
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
    forwarded = sink.wait_for(derm, count=2)[1]
    assert "Yes, mostly at night." in forwarded.text
    assert "Is the rash itchy" not in forwarded.text.split("Yes, mostly")[0]
    assert [p.get_filename() for p in forwarded.message.iter_attachments()] == [
        "4-additional.jpg"]
    # and the dermatologist answers from the forwarded email
    answer(service, app, derm, forwarded, ANSWER)
    assert cli_json(config, "cases", "show", number)["state"] == "reviewed"


def test_decline_reassigns_and_a_forged_answer_is_quarantined(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    one, two = dermatologists
    number, _ack, notification = open_case(service, sink, provider, one)
    # derm two answers on derm one's reply address: not theirs
    msg, address = reply_to(notification, two, ANSWER)
    forged = wait_final(app, send(service, two, msg, address))
    assert forged.status == MessageStatus.QUARANTINED
    assert forged.reason_code == "wrong-participant"

    row = answer(service, app, one, notification, "Decline: conflict of interest")
    assert row.route == "decline"
    second = sink.wait_for(two)[0]
    assert number in str(second.message["Subject"])
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "assigned" and shown["assignee"] == two
    # derm one, no longer the assignee, tries to answer anyway
    late = answer(service, app, one, notification, ANSWER)
    assert late.status == MessageStatus.QUARANTINED and late.reason_code == "not-assignee"
    answer(service, app, two, second, ANSWER)
    assert cli_json(config, "cases", "show", number)["state"] == "reviewed"


def test_the_conversation_arrives_in_order_and_an_addendum_reissues_the_report(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, ANSWER)
    last_to_provider = sink.wait_for(provider, count=2)[1]
    last_to_derm = notification
    for i in range(3):
        msg, address = reply_to(last_to_provider, provider, f"Provider update {i}")
        wait_final(app, send(service, provider, msg, address))
        last_to_derm = sink.wait_for(derm, count=2 + i)[1 + i]
        assert f"Provider update {i}" in last_to_derm.text
        msg, address = reply_to(last_to_derm, derm, f"Derm advice {i}")
        wait_final(app, send(service, derm, msg, address))
        last_to_provider = sink.wait_for(provider, count=3 + i)[2 + i]
        assert f"Derm advice {i}" in last_to_provider.text
    shown = cli_json(config, "cases", "show", number)
    comments = [n["body"] for n in shown["notes"] if n["kind"] == "comment"]
    assert comments == [f"{who} {i}" for i in range(3)
                        for who in ("Provider update", "Derm advice")]
    assert shown["state"] == "follow_up"

    addendum = ANSWER.replace("Nummular eczema", "Allergic contact dermatitis")
    answer(service, app, derm, last_to_derm, addendum)
    updated = sink.wait_for(provider, count=6)[5]
    assert "addendum" in str(updated.message["Subject"]).lower()
    report = pdf_text(pdf_of(updated))
    assert "Nummular eczema" in report and "Allergic contact dermatitis" in report
    assert "addendum" in report.lower() and "Provider update 2" in report
    assert [c["version"] for c in cli_json(config, "cases", "show", number)["consults"]] == [1, 2]


def test_close_from_the_provider_and_a_later_message_reopens_as_follow_up(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    answer(service, app, derm, notification, ANSWER)
    consult = sink.wait_for(provider, count=2)[1]
    msg, address = reply_to(consult, provider, "Thanks, all clear.\nClose")
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "closed"
    assert "closed" in str(sink.wait_for(derm, count=2)[1].message["Subject"])
    msg, address = reply_to(consult, provider, "The rash came back.")
    wait_final(app, send(service, provider, msg, address))
    assert cli_json(config, "cases", "show", number)["state"] == "follow_up"
    assert "The rash came back." in sink.wait_for(derm, count=3)[2].text


def test_a_reply_with_only_the_quoted_original_adds_nothing(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    row = answer(service, app, derm, notification, "")
    assert row.route == "empty-reply"
    assert "no new text" in sink.wait_for(derm, count=2)[1].text
    assert cli_json(config, "cases", "show", number)["state"] == "assigned"
