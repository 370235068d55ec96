"""strip_quoted: the new text of a reply, as Gmail, Outlook and Apple Mail send it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.parse.reply import strip_quoted

NEW = "Date of birth: 1961-03-03\nSex: female"


def test_gmail_reply_with_wrapped_attribution() -> None:
    text = (
        f"{NEW}\n\n"
        "On Tue, Mar 5, 2024 at 10:00 AM Mailflow Cases <\n"
        "cases@mailflow.example> wrote:\n\n"
        "> Case 2024-0012 is missing: date of birth, sex.\n"
        ">\n"
        "> Reply to this email with the missing items.\n"
    )
    assert strip_quoted(text) == NEW


def test_gmail_single_line_attribution() -> None:
    text = f"{NEW}\n\nOn Tue, 5 Mar 2024 at 10:00, Cases <c@x.example> wrote:\n> quoted\n"
    assert strip_quoted(text) == NEW


def test_apple_mail_reply() -> None:
    text = (
        f"{NEW}\n\nSent from my iPhone\n\n"
        "> On 5 Mar 2024, at 10:00, Mailflow Cases <cases@mailflow.example> wrote:\n"
        ">\n> Case 2024-0012 is missing: date of birth.\n"
    )
    assert strip_quoted(text) == NEW


def test_outlook_reply_with_underscore_separator() -> None:
    text = (
        f"{NEW}\n\n"
        "Get Outlook for iOS\n"
        "________________________________\n"
        "From: Mailflow Cases <cases@mailflow.example>\n"
        "Sent: Tuesday, March 5, 2024 10:00 AM\n"
        "To: Ada Testdoc <ada@clinic.example>\n"
        "Subject: Case 2024-0012: missing items\n\n"
        "Case 2024-0012 is missing: date of birth.\n"
    )
    assert strip_quoted(text) == NEW


def test_outlook_original_message_block() -> None:
    text = (
        f"{NEW}\n\n-----Original Message-----\n"
        "From: Mailflow Cases [mailto:cases@mailflow.example]\n"
        "Sent: Tuesday, March 5, 2024 10:00 AM\n"
        "Subject: Case\n\nmissing items\n"
    )
    assert strip_quoted(text) == NEW


def test_outlook_header_block_without_separator_and_bold_labels() -> None:
    text = (
        f"{NEW}\n\n*From:* Mailflow Cases <cases@mailflow.example>\n"
        "*Date:* Tuesday, March 5, 2024 10:00 AM\n*To:* Ada\n\nold text\n"
    )
    assert strip_quoted(text) == NEW


def test_outlook_header_block_on_one_line() -> None:
    text = f"{NEW}\nFrom: Cases <c@x.example> Sent: Tuesday, March 5 To: Ada Subject: Case\nold"
    assert strip_quoted(text) == NEW


def test_form_line_starting_with_from_is_kept() -> None:
    text = "From: Dr Ada Testdoc, Main Street Clinic\nPatient name: Jane Testpatient\nSex: F"
    assert strip_quoted(text) == text


@pytest.mark.parametrize(
    "attribution",
    [
        "Le mar. 5 mars 2024 à 10:00, Mailflow <cases@mailflow.example> a écrit :",
        "Am 05.03.2024 um 10:00 schrieb Mailflow <cases@mailflow.example>:",
        "El mar, 5 mar 2024 a las 10:00, Mailflow (<cases@mailflow.example>) escribió:",
        "Ada Testdoc <ada@clinic.example> wrote:",
    ],
)
def test_localized_and_bare_attributions(attribution: str) -> None:
    assert strip_quoted(f"{NEW}\n\n{attribution}\n> quoted\n> more\n") == NEW


def test_attribution_followed_by_unquoted_original_cuts_everything_below() -> None:
    text = f"{NEW}\n\nOn Tue, Mar 5, 2024 at 10:00 AM Cases <c@x.example> wrote:\n\nold text\n"
    assert strip_quoted(text) == NEW


def test_inline_answers_between_quotes_survive() -> None:
    text = (
        "On Tue, Mar 5, 2024 Cases <c@x.example> wrote:\n"
        "> Date of birth is missing.\n"
        "1961-03-03\n"
        "> Sex is missing.\n"
        "female\n"
    )
    assert strip_quoted(text) == "1961-03-03\nfemale"


def test_signature_and_everything_below_is_removed() -> None:
    assert strip_quoted(f"{NEW}\n-- \nDr Ada Testdoc\nMain Street Clinic") == NEW
    assert strip_quoted(f"{NEW}\n--\nDr Ada Testdoc") == NEW


def test_forwarded_markers() -> None:
    gmail = f"{NEW}\n\n---------- Forwarded message ---------\nFrom: X\nDate: Y\n\nold"
    apple = f"{NEW}\n\nBegin forwarded message:\n\nFrom: X\nSubject: Y\n\nold"
    assert strip_quoted(gmail) == NEW
    assert strip_quoted(apple) == NEW


@pytest.mark.parametrize(
    "footer",
    ["Sent from my iPhone", "Sent from my Galaxy", "Get Outlook for Android", "Sent from Mail"],
)
def test_device_footers_at_the_end(footer: str) -> None:
    assert strip_quoted(f"{NEW}\n\n{footer}\n") == NEW


def test_device_footer_words_in_the_middle_are_kept() -> None:
    text = "Sent from my iPhone the photos did not attach.\nPatient name: Jane"
    assert strip_quoted(text) == text


def test_plain_text_without_quotes_is_unchanged() -> None:
    text = "Patient name: Jane Testpatient\n\nQuestion: rash?\nMore detail."
    assert strip_quoted(text) == text
    assert strip_quoted("") == ""
    assert strip_quoted("\r\nline one\r\nline two\r\n") == "line one\nline two"


@given(st.text())
def test_never_adds_text(text: str) -> None:
    result = strip_quoted(text)
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    assert all(line.rstrip() in normalized for line in result.split("\n"))


def test_lotus_notes_header_block() -> None:
    text = (
        f"{NEW}\n\nVon:     Mailflow <cases@mailflow.example>\n"
        "An       ada@clinic.example\nDatum:   Mi., 13.06.2012 14:30\n\nold text\n"
    )
    assert strip_quoted(text) == NEW
