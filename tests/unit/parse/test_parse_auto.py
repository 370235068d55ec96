"""automatic_reason: never auto-reply to machines (mail loops, DESIGN §3.7)."""

from __future__ import annotations

import pytest

from mailflow.parse.auto import automatic_reason
from mailflow.parse.mime import parse_message

HUMAN_ENVELOPE = "ada.testdoc@clinic.example"


def message(headers: str = "", content_type: str = "text/plain") -> bytes:
    base = (
        "From: Dr Ada Testdoc <ada.testdoc@clinic.example>\n"
        "To: cases@mailflow.example\n"
        "Subject: New case\n"
        f"Content-Type: {content_type}\n"
    )
    return (base + headers).replace("\n", "\r\n").encode() + b"\r\nPatient name: Jane\r\n"


def reason(headers: str = "", envelope: str = HUMAN_ENVELOPE, **kwargs: str) -> str:
    return automatic_reason(parse_message(message(headers, **kwargs)), envelope)


def test_a_person_is_not_automatic() -> None:
    assert reason() == ""
    assert reason("Auto-Submitted: no\nPrecedence: first-class\n") == ""


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: auto-replied\n",
        "Auto-Submitted: auto-generated (warning-timeout)\n",
        "AUTO-SUBMITTED: Auto-Notified\n",
        "Precedence: bulk\n",
        "Precedence: list\n",
        "Precedence: JUNK\n",
        "List-Id: Dermatology news <news.derm.example>\n",
        "X-Autoreply: yes\n",
        "X-Autorespond: vacation\n",
        "X-AutoReply-From: ada@clinic.example\n",
    ],
)
def test_automatic_headers(headers: str) -> None:
    assert reason(headers)


@pytest.mark.parametrize("envelope", ["", "<>", "  <>  "])
def test_empty_envelope_sender_is_a_bounce(envelope: str) -> None:
    assert "empty envelope" in reason(envelope=envelope)


@pytest.mark.parametrize(
    "envelope",
    [
        "MAILER-DAEMON@relay.example",
        "<postmaster@clinic.example>",
        "noreply@portal.example",
        "no-reply+x123@portal.example",
        "do-not-reply@portal.example",
    ],
)
def test_robot_envelope_senders(envelope: str) -> None:
    assert reason(envelope=envelope)


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example (Mail Delivery System)",
        "Mail Delivery Subsystem <MAILER-DAEMON@mx.example>",
        "MAILER-DAEMON",
        "Portal <NoReply@portal.example>",
        "postmaster@clinic.example",
    ],
)
def test_robot_from_addresses(sender: str) -> None:
    raw = message().replace(
        b"From: Dr Ada Testdoc <ada.testdoc@clinic.example>", f"From: {sender}".encode()
    )
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE)


def test_delivery_reports() -> None:
    assert "multipart/report" in reason(
        content_type='multipart/report; report-type=delivery-status; boundary="r"'
    )


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: New case",
        "Automatic reply: New case",
        "Auto: away until Monday",
        "Undeliverable: New case",
        "Delivery Status Notification (Failure)",
        "out of office",
    ],
)
def test_automatic_subjects(subject: str) -> None:
    raw = message().replace(b"Subject: New case", f"Subject: {subject}".encode())
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE)


@pytest.mark.parametrize("subject", ["Re: Out of office coverage for case 12", "Automatically?"])
def test_subjects_that_only_mention_it_are_human(subject: str) -> None:
    raw = message().replace(b"Subject: New case", f"Subject: {subject}".encode())
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE) == ""


def test_display_name_with_robot_words_is_human() -> None:
    raw = message().replace(
        b"From: Dr Ada Testdoc <ada.testdoc@clinic.example>",
        b'From: "Postmaster General Office" <ada.testdoc@clinic.example>',
    )
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE) == ""


@pytest.mark.parametrize(
    "subject",
    [
        "Abwesenheitsnotiz: Re: DERM-2026-000123",
        "Abwesenheitsnotiz",
        "Automatische Antwort: Re: Ihr Fall",
        "Out of Office: Re: DERM-2026-000123",
        "Out of Office AutoReply: New case",
        "Automatic reply: Re: DERM-2026-000123 needs more information",
        "Auto: Dr Family is out of the office (returning 11/09/2026)",
        "AUTO: away",
        "Réponse automatique : Re: DERM-2026-000123",
        "Absence du bureau : Re: votre dossier",
        "Respuesta automática: Re: DERM-2026-000123",
        "Fuera de la oficina: Re: caso",
        "Risposta automatica: Re: DERM-2026-000123",
        "Automatisch antwoord: Re: DERM-2026-000123",
        "Afwezig: Re: casus",
        "Resposta automática: Re: caso",
        "Autosvar: Re: DERM-2026-000123",
        "Automatisk svar: Re: sak",
        "Automaattinen vastaus: Re: tapaus",
        "Odpowiedź automatyczna: Re: przypadek",
        "Automatická odpověď: Re: případ",
        "Automatikus válasz: Re: eset",
        "Αυτόματη απάντηση: Re: υπόθεση",
        "Автоматический ответ: Re: DERM-2026-000123",
        "Otomatik yanıt: Re: vaka",
        "自動応答: Re: DERM-2026-000123",
        "自動返信：Re: DERM-2026-000123",  # a full-width colon
        "自动回复: Re: DERM-2026-000123",
        "자동 회신: Re: DERM-2026-000123",
        "[Auto-Reply] Re: DERM-2026-000123",
        "[Out of Office] New case",
        "Auto Response - Re: DERM-2026-000123",
        "  out\u00a0of office:  Re: case",  # a no-break space, as some clients write it
    ],
)
def test_out_of_office_subjects_in_many_languages(subject: str) -> None:
    raw = message().replace(b"Subject: New case", f"Subject: {subject}".encode())
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE).startswith(
        "its subject starts with"), subject


@pytest.mark.parametrize(
    "subject",
    [
        "Re: office visit",
        "Automatic dishwasher rash",
        "Auto accident abrasion, photos attached",
        "Autosomal dominant pattern? Re: DERM-2026-000123",
        "Re: Automatic reply: Re: DERM-2026-000123",  # a person answering the notice
        "AW: Abwesenheitsnotiz",
        "Out of office coverage for Dr Family",
        "Absence seizure history, new rash",
        "Réponse à votre question",
        "Abwesenheit von Symptomen",
        "Fuera de control: itchy rash",
        "Autonomic symptoms",
        "Office hours question",
    ],
)
def test_ordinary_subjects_are_not_automatic(subject: str) -> None:
    raw = message().replace(b"Subject: New case", f"Subject: {subject}".encode())
    assert automatic_reason(parse_message(raw), HUMAN_ENVELOPE) == ""
