"""Issue #9 item 3: the consult PDF is the clinical record. A case answered by email through the
real SMTP door, with comments both ways, a More info question and its answer, the consult, more
comments and an addendum; the PDF read back page by page, and the web case page beside it."""

from __future__ import annotations

import io
import re

from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseNote
from mailflow.reports.pdf import format_time
from mailflow.web.app import create_web_app
from tests.conftest import ROOT, RunningService
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.db import wait_final
from tests.support.mail import case_email, reply_to
from tests.support.review import ANSWER, pdf_of, send
from tests.support.sink import Delivered, RelaySink
from tests.support.web import sign_in

ARTIFACTS = ROOT / "test-artifacts"
# Written out of the form's order on purpose: the record puts it back in order.
FORM = """Patient name: Jane Testpatient
Date of birth: 1961-03-04
Sex: female
Duration: 3 months
Urgency: routine
Location on body: anterior lower legs, both sides
Reason for referral: itchy scaly plaques on both shins, eczema or psoriasis?
Symptoms: itch, worse at night
Allergies: none known
Patient consent to photos: yes
"""
LONG_UPDATE = "\n\n".join(
    f"Week {i} update: the plaques on the left shin are flatter, the itch is down to the "
    f"evenings, no new lesions; she uses the ointment twice daily and emollient after showers."
    for i in range(1, 40)
)


def flat(text: str) -> str:
    return " ".join(text.split())


def pages_of(data: bytes) -> list[str]:
    return [flat(p.extract_text()) for p in PdfReader(io.BytesIO(data)).pages]


def in_order(text: str, parts: list[str]) -> None:
    """Each part appears, and after the one before it (case-blind: headings are upper case)."""
    folded, at = text.casefold(), 0
    for part in parts:
        found = folded.find(part.casefold(), at)
        assert found >= 0, f"{part!r} missing after position {at}: {text[at:at + 300]!r}"
        at = found + len(part)


def say(service: RunningService, app: App, who: str, to: Delivered, body: str) -> None:
    msg, address = reply_to(to, who, body)
    wait_final(app, send(service, who, msg, address))


def thread_lines(app: App, number: str) -> list[str]:
    """'<title> · <author> <ROLE> · <time>' as the record heads each message of the thread."""
    titles = {"comment": "Comment", "question": "More info question",
              "answer_to_question": "Answer to the question"}
    with app.sessions() as session:
        rows = session.execute(
            select(CaseNote, Account).join(Account, Account.id == CaseNote.author_id)
            .join(Case, Case.id == CaseNote.case_id).where(Case.number == number)
            .order_by(CaseNote.id)
        ).all()
        return [f"{titles[n.kind]} · {a.name} {a.role} · "
                f"{format_time(n.created_at, app.roster.timezone)}" for n, a in rows]


def test_the_report_is_the_whole_record_on_every_page(
    service: RunningService, app: App, sink: RelaySink, provider: str,
    dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    send(service, provider, case_email(provider, CASES, FORM, three_photos()))
    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    notification = sink.wait_for(derm)[0]

    # before the answer: a comment each way, then a question and its answer
    say(service, app, provider, ack, "She started a new laundry detergent last month.")
    say(service, app, derm, sink.wait_for(derm, count=2)[1], "Noted, thank you; photos are clear.")
    say(service, app, derm, notification, "More info: Is the rash itchy at night?")
    question = sink.wait_for(provider, count=3)[2]
    say(service, app, provider, question, "Yes, mostly at night.")
    say(service, app, derm, sink.wait_for(derm, count=3)[2], ANSWER + "ICD-10: L30.0\n")
    first = sink.wait_for(provider, count=4)[3]
    assert "consult report" in str(first.message["Subject"])
    # after it: a long update, a reply, and an addendum
    say(service, app, provider, first, LONG_UPDATE)
    update = sink.wait_for(derm, count=4)[3]
    say(service, app, derm, update, "Good progress: keep going for two more weeks.")
    say(service, app, derm, update,
        ANSWER.replace("Nummular eczema", "Allergic contact dermatitis"))
    second = sink.wait_for(provider, count=6)[5]
    assert "addendum" in str(second.message["Subject"]).lower()

    # the web case page numbers the addendum as the PDF does (below)
    with TestClient(create_web_app(app)) as browser:
        assert sign_in(browser, provider).status_code == 303
        page = browser.get(f"/cases/{number}").text
    assert re.search(r"<h3>Addendum 1 by ", page) and "Addendum 2" not in page

    heads = thread_lines(app, number)
    assert len(heads) == 6
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "consult-record-e2e.pdf").write_bytes(pdf_of(second))  # for a human to look at
    pages = pages_of(pdf_of(second))
    text = " ".join(pages)
    in_order(text, [
        "HISTORY", "Reason for referral / question itchy scaly plaques",
        "Location on body anterior lower legs", "Duration 3 months", "Symptoms itch",
        "Allergies none known", "Patient consent to photos yes",
        "Conversation before the answer",
        heads[0], "She started a new laundry detergent last month.",
        heads[1], "Noted, thank you; photos are clear.",
        heads[2], "Is the rash itchy at night?",
        heads[3], "Yes, mostly at night.",
        "Consult answer", "Diagnosis Nummular eczema", "Differential Tinea corporis",
        "Plan Triamcinolone", "Follow-up 4 weeks", "In-person visit Manage in primary care",
        "Biopsy no", "ICD-10 L30.0",
        "Addendum 1", "Diagnosis Allergic contact dermatitis", "Differential Tinea corporis",
        "Plan Triamcinolone", "Follow-up 4 weeks", "In-person visit Manage in primary care",
        "Conversation after the answer",
        heads[4], "Week 1 update", "Week 39 update",
        heads[5], "Good progress: keep going for two more weeks.",
        "Addendum 1 · Dr Derm One",
    ])
    assert "urgency" not in text.casefold() and "Addendum 2" not in text
    assert "ROUTINE" in pages[0][:pages[0].index("HISTORY")]  # in the header instead
    assert len(pages) >= 3
    for n, page in enumerate(pages, start=1):
        for words in ("Jane Testpatient", "DOB 1961-03-04", number, f"Page {n} of {len(pages)}"):
            assert words in page, (n, words)

    # the first issue already had the conversation that led to the answer
    first_text = " ".join(pages_of(pdf_of(first)))
    in_order(first_text, [heads[2], "Is the rash itchy at night?", heads[3],
                          "Yes, mostly at night.", "Consult answer"])
    assert "Conversation after the answer" not in first_text
