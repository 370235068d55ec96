"""parse_case_form: the DESIGN §1 case form with synonyms, validation and photo captions."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.parse.form import REQUIRED, parse_case_form
from mailflow.parse.types import CaseForm

TODAY = date(2024, 6, 1)

FULL_FORM = """Hi, a new case for you.

Patient name: Jane Testpatient
Date of birth: 1961-03-03
Sex: Female
Chart/MRN: TP-000123
Reason for referral: Is this a melanoma or a seborrheic keratosis?
It bled once last week.
Location on body: left upper back
Duration: 3 months
Symptoms (itch, pain, bleeding): itch, bled once
Evolution: grew from 4 mm to 7 mm, darker at the edge
Treatments tried and response: none
Current medications: lisinopril 10 mg
Allergies: penicillin
Past medical history: hypertension
Family history of skin cancer: father, melanoma at 60
Fitzpatrick skin type: 2
Pregnant or nursing: no
Immunosuppressed: no
Patient consent to photos: yes
Urgency: routine

Thanks,
Dr Ada Testdoc
"""


def form(text: str) -> CaseForm:
    return parse_case_form(text, today=TODAY)


def test_the_full_form() -> None:
    result = form(FULL_FORM)
    assert result.fields == {
        "patient_name": "Jane Testpatient",
        "date_of_birth": "1961-03-03",
        "sex": "Female",
        "mrn": "TP-000123",
        "question": "Is this a melanoma or a seborrheic keratosis?\nIt bled once last week.",
        "location": "left upper back",
        "duration": "3 months",
        "symptoms": "itch, bled once",
        "evolution": "grew from 4 mm to 7 mm, darker at the edge",
        "treatments": "none",
        "medications": "lisinopril 10 mg",
        "allergies": "penicillin",
        "history": "hypertension",
        "family_history": "father, melanoma at 60",
        "fitzpatrick": "II",
        "pregnant": "no",
        "immunosuppressed": "no",
        "consent": "yes",
        "urgency": "routine",
    }
    assert result.labels["mrn"] == "Chart/MRN"
    assert result.date_of_birth == date(1961, 3, 3)
    assert (result.sex, result.urgency) == ("female", "routine")
    assert result.missing == ()
    assert result.invalid == ()
    assert result.unknown_lines == ()


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("Name: Jane Testpatient", "patient_name", "Jane Testpatient"),
        ("Pt name: Jane Testpatient", "patient_name", "Jane Testpatient"),
        ("Pt.: Jane Testpatient", "patient_name", "Jane Testpatient"),
        ("Patient: Jane Testpatient", "patient_name", "Jane Testpatient"),
        ("D.O.B.: 1961-03-03", "date_of_birth", "1961-03-03"),
        ("Birthdate: 1961-03-03", "date_of_birth", "1961-03-03"),
        ("Patient DOB: 1961-03-03", "date_of_birth", "1961-03-03"),
        ("Gender: F", "sex", "F"),
        ("Chart number: 42", "mrn", "42"),
        ("Medical record number: 42", "mrn", "42"),
        ("Clinical question: rash?", "question", "rash?"),
        ("Body site: scalp", "location", "scalp"),
        ("Where: scalp", "location", "scalp"),
        ("How long: 2 weeks", "duration", "2 weeks"),
        ("Onset: 2 weeks ago", "duration", "2 weeks ago"),
        ("Itch: yes", "symptoms", "yes"),
        ("Changes: bigger", "evolution", "bigger"),
        ("Tried: emollients", "treatments", "emollients"),
        ("Meds: none", "medications", "none"),
        ("Allergy: NKDA", "allergies", "NKDA"),
        ("PMH: asthma", "history", "asthma"),
        ("FHx: none", "family_history", "none"),
        ("Skin type: IV", "fitzpatrick", "IV"),
        ("Nursing: yes", "pregnant", "yes"),
        ("Immunocompromised: yes, tacrolimus", "immunosuppressed", "yes, tacrolimus"),
        ("Photo consent: yes", "consent", "yes"),
        ("Priority: urgent", "urgency", "urgent"),
    ],
)
def test_synonyms(text: str, key: str, value: str) -> None:
    result = form(text)
    assert result.fields[key] == value
    assert result.unknown_lines == ()


def test_markdown_bold_labels_from_html_mail() -> None:
    result = form("*Patient name:* Jane Testpatient\n**Sex**: F\n- *DOB:* 3/4/61")
    assert result.fields["patient_name"] == "Jane Testpatient"
    assert result.sex == "female"
    assert result.date_of_birth == date(1961, 3, 4)


def test_missing_required_fields() -> None:
    assert form("").missing == REQUIRED
    result = form("Patient name: Jane\nSex:\nQuestion: rash?\nLocation: arm\nDuration: 1 week")
    assert result.missing == ("date_of_birth", "sex", "consent")
    assert result.sex == ""


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1961-03-03", date(1961, 3, 3)),
        ("03/04/1961", date(1961, 3, 4)),
        ("3/4/61", date(1961, 3, 4)),
        ("March 3, 1961", date(1961, 3, 3)),
        ("3 Mar 1961", date(1961, 3, 3)),
        ("03-04-1961", date(1961, 3, 4)),
        ("25/03/1961", date(1961, 3, 25)),
        ("1961-03-03 (63 years)", date(1961, 3, 3)),
    ],
)
def test_date_of_birth_formats(typed: str, expected: date) -> None:
    result = form(f"DOB: {typed}")
    assert result.date_of_birth == expected
    assert result.invalid == ()
    assert result.fields["date_of_birth"] == typed


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("2030-01-01", "in the future"),
        ("1890-01-01", "over 130 years"),
        ("02/30/1961", "not a date"),
        ("sometime in the sixties", "not a date"),
    ],
)
def test_invalid_dates_of_birth(typed: str, why: str) -> None:
    result = form(f"DOB: {typed}")
    assert result.date_of_birth is None
    ((key, reason),) = result.invalid
    assert key == "date_of_birth" and why in reason


@pytest.mark.parametrize(
    ("typed", "sex"),
    [
        ("F", "female"),
        ("female", "female"),
        ("Woman", "female"),
        ("f.", "female"),
        ("M", "male"),
        ("Male", "male"),
        ("man", "male"),
        ("other", "other"),
        ("X", "other"),
        ("Nonbinary", "other"),
        ("non-binary", "other"),
        ("intersex", "other"),
    ],
)
def test_sex_is_normalized(typed: str, sex: str) -> None:
    result = form(f"Sex: {typed}")
    assert result.sex == sex
    assert result.invalid == ()


def test_unrecognized_sex_is_invalid() -> None:
    result = form("Sex: unsure")
    assert result.sex == ""
    assert [key for key, _ in result.invalid] == ["sex"]


@pytest.mark.parametrize(
    ("typed", "urgency", "invalid"),
    [
        ("routine", "routine", False),
        ("Normal", "routine", False),
        ("non-urgent", "routine", False),
        ("URGENT", "urgent", False),
        ("high", "urgent", False),
        ("ASAP!", "urgent", False),
        ("whenever", "routine", True),
    ],
)
def test_urgency(typed: str, urgency: str, invalid: bool) -> None:
    result = form(f"Urgency: {typed}")
    assert result.urgency == urgency
    assert bool(result.invalid) == invalid


def test_urgency_defaults_to_routine() -> None:
    assert form("Patient name: Jane").urgency == "routine"


@pytest.mark.parametrize(("typed", "consent"), [("Yes", "yes"), ("y", "yes"), ("No", "no")])
def test_consent_is_normalized(typed: str, consent: str) -> None:
    assert form(f"Consent: {typed}").fields["consent"] == consent


def test_no_consent_is_invalid_with_a_reason() -> None:
    result = form("Patient consent to photos: no")
    assert ("consent", "the patient has not consented to photos") in result.invalid


@pytest.mark.parametrize(
    ("typed", "roman"), [("1", "I"), ("III", "III"), ("type 4", "IV"), ("vi", "VI"), ("5", "V")]
)
def test_fitzpatrick_is_roman(typed: str, roman: str) -> None:
    result = form(f"Fitzpatrick: {typed}")
    assert result.fields["fitzpatrick"] == roman
    assert result.invalid == ()


def test_fitzpatrick_out_of_range_is_invalid() -> None:
    assert [key for key, _ in form("Fitzpatrick: 9").invalid] == ["fitzpatrick"]


def test_photo_captions() -> None:
    text = (
        "Patient name: Jane Testpatient\n"
        "Photo 1: distribution, whole back\n"
        "Image 2 - close-up of the lesion\n"
        "Picture #3: oblique view\n"
        "IMG_1234.jpg: wide view\n"
        "- back close.HEIC – with ruler\n"
        "Location: back\n"
    )
    result = form(text)
    assert result.photo_captions == {
        "1": "distribution, whole back",
        "2": "close-up of the lesion",
        "3": "oblique view",
        "IMG_1234.jpg": "wide view",
        "back close.HEIC": "with ruler",
    }
    assert result.fields == {"patient_name": "Jane Testpatient", "location": "back"}
    assert result.unknown_lines == ()


def test_unknown_lines_and_sign_off() -> None:
    result = form("Patient name: Jane\nSmoker: yes\nUrgency: urgent\n\nBest,\nDr Ada Testdoc")
    assert result.unknown_lines == ("Smoker: yes",)
    assert result.fields["urgency"] == "urgent"
    assert result.urgency == "urgent"


@given(st.text())
def test_any_text_gives_a_header_safe_form(text: str) -> None:
    result = parse_case_form(text, today=TODAY)
    for value in [*result.fields.values(), *result.labels.values()]:
        assert "\r" not in value
        assert not any(ord(ch) < 32 and ch != "\n" for ch in value)
    assert result.urgency in ("routine", "urgent")
    assert result.sex in ("", "female", "male", "other")
