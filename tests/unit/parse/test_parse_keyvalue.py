"""parse_key_values: `Key: value` lines as typed in mail clients."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.parse.keyvalue import normalize_label, parse_key_values

SYNONYMS = {
    "patient name": "patient_name",
    "pt name": "patient_name",
    "name": "patient_name",
    "dob": "date_of_birth",
    "D.O.B.": "date_of_birth",
    "date of birth": "date_of_birth",
    "plan": "plan",
    "treatments tried": "treatments",
    "question": "question",
    "diagnosis": "diagnosis",
}


def values(text: str) -> dict[str, str]:
    return parse_key_values(text, SYNONYMS).values


@pytest.mark.parametrize(
    ("label", "normalized"),
    [
        ("Pt. Name", "pt name"),
        ("D.O.B.", "dob"),
        ("  Date-of-birth ", "date of birth"),
        ("Sex (M/F)", "sex"),
        ("MRN #", "mrn"),
        ("Patient's  name", "patients name"),
        ("IMG_1234", "img 1234"),
    ],
)
def test_normalize_label(label: str, normalized: str) -> None:
    assert normalize_label(label) == normalized


@pytest.mark.parametrize(
    "line",
    [
        "Patient name: Jane Testpatient",
        "patient NAME:Jane Testpatient",
        "Pt. name: Jane Testpatient",
        "Patient name : Jane Testpatient",
        "Patient name:\tJane Testpatient",
        "*Patient name:* Jane Testpatient",
        "**Patient name**: Jane Testpatient",
        "- Patient name: Jane Testpatient",
        "• Patient name: Jane Testpatient",
        "1. Patient name: Jane Testpatient",
        "  Patient name: Jane Testpatient",
        "Patient name： Jane Testpatient",
    ],
)
def test_label_spellings(line: str) -> None:
    assert values(line) == {"patient_name": "Jane Testpatient"}


def test_labels_and_leading_patient_word() -> None:
    result = parse_key_values("Patient DOB: 1961-03-03\nD.O.B.: 1961-03-04", SYNONYMS)
    assert result.values == {"date_of_birth": "1961-03-04"}
    assert result.labels == {"date_of_birth": "D.O.B."}
    assert result.repeated == ("date_of_birth",)


def test_only_the_first_colon_splits() -> None:
    assert values("Plan: apply cream at 8:00 and 20:00") == {
        "plan": "apply cream at 8:00 and 20:00"
    }


def test_multi_line_values_keep_line_breaks() -> None:
    text = (
        "Question: is this a melanoma?\n"
        "   It has grown over 3 months.\n"
        "\n"
        "Also itchy at night.\n"
        "\n\n"
        "Plan: none yet\n"
    )
    assert values(text) == {
        "question": "is this a melanoma?\nIt has grown over 3 months.\n\nAlso itchy at night.",
        "plan": "none yet",
    }


def test_value_on_the_following_lines() -> None:
    text = "Question:\n\n  Is this\n  a melanoma?\nPlan:\nnothing\n"
    assert values(text) == {"question": "Is this\na melanoma?", "plan": "nothing"}


def test_unknown_labels_are_reported_not_kept() -> None:
    result = parse_key_values("Patient name: Jane\nFavourite colour: blue\nDOB: 1961", SYNONYMS)
    assert result.values == {"patient_name": "Jane", "date_of_birth": "1961"}
    assert result.unknown_lines == ("Favourite colour: blue",)
    assert result.unknown == (("Favourite colour", "blue"),)


@pytest.mark.parametrize(
    "continuation",
    [
        "Apply at 8:00 and again at 20:00",  # a time, not a label
        "This is a very long sentence that happens to end in a colon: really",  # > 40 chars
        "Note, however: this continues",  # sentence punctuation in the label
        "See https://derm.example/guide",  # a URL
        "12: twelve",  # digits only
    ],
)
def test_colon_lines_that_are_not_labels_continue_the_value(continuation: str) -> None:
    result = parse_key_values(f"Plan: first line\n{continuation}", SYNONYMS)
    assert result.values == {"plan": f"first line\n{continuation}"}
    assert result.unknown_lines == ()


def test_labelled_lines_inside_a_block_value_belong_to_it() -> None:
    text = (
        "Treatments tried:\n"
        "Hydrocortisone 1%: no effect\n"
        "Clotrimazole: slight improvement\n"
        "\n"
        "Smoker: yes\n"
        "Plan: biopsy\n"
        "  Timing: next week\n"
    )
    result = parse_key_values(text, SYNONYMS)
    assert result.values == {
        "treatments": "Hydrocortisone 1%: no effect\nClotrimazole: slight improvement",
        "plan": "biopsy\nTiming: next week",
    }
    assert result.unknown_lines == ("Smoker: yes",)


def test_single_paragraph_keys_end_at_a_blank_line() -> None:
    text = "Question: rash?\nDOB: 1961-03-03\n\nThanks,\nDr Ada Testdoc"
    result = parse_key_values(text, SYNONYMS, single_paragraph={"date_of_birth"})
    assert result.values == {"question": "rash?", "date_of_birth": "1961-03-03"}
    assert result.other_lines == ("Thanks,", "Dr Ada Testdoc")


def test_text_before_the_first_key_is_other() -> None:
    result = parse_key_values("Hi team,\nplease see below.\n\nName: Jane", SYNONYMS)
    assert result.values == {"patient_name": "Jane"}
    assert result.other_lines == ("Hi team,", "please see below.")


def test_control_characters_and_carriage_returns_are_removed() -> None:
    result = values("Name: Jane\x00 Test\x1b[31mpatient\r\nQuestion: a\rb\u2028c\x07")
    assert result == {"patient_name": "Jane Test[31mpatient", "question": "a\nbc"}


def test_dermatologist_answer() -> None:
    text = (
        "Diagnosis: Nummular eczema\n"
        "Differential: Tinea corporis; plaque psoriasis\n"
        "Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks; emollients\n"
    )
    result = parse_key_values(text, SYNONYMS)
    assert result.values["diagnosis"] == "Nummular eczema"
    assert result.values["plan"].startswith("Triamcinolone")
    assert result.unknown_lines == ("Differential: Tinea corporis; plaque psoriasis",)


@given(st.text())
def test_values_are_header_safe(text: str) -> None:
    result = parse_key_values(text, SYNONYMS)
    for value in [*result.values.values(), *result.labels.values(), *result.unknown_lines]:
        assert "\r" not in value
        assert not any(ord(ch) < 32 and ch != "\n" for ch in value)
