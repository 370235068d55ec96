"""parse_answer: a dermatologist's reply as consult, question, decline, close or comment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.parse.answer import KINDS, Answer, icd10_code, parse_answer
from mailflow.parse.reply import strip_quoted

DESIGN_EXAMPLE = """Diagnosis: Nummular eczema
Differential: Tinea corporis; plaque psoriasis
Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks; emollients
Follow-up: 4 weeks
In-person visit: not needed   (not needed | routine | urgent within 2 weeks | same day)
Biopsy: no
"""


def test_the_design_example() -> None:
    result = parse_answer(DESIGN_EXAMPLE)
    assert result == Answer(
        kind="consult",
        diagnosis="Nummular eczema",
        differential="Tinea corporis; plaque psoriasis",
        plan="Triamcinolone 0.1% ointment twice daily for 2 weeks; emollients",
        follow_up="4 weeks",
        in_person="not needed",
        biopsy="no",
        text=DESIGN_EXAMPLE.strip(),
    )


def test_all_fields_with_sign_off() -> None:
    result = parse_answer(
        "Hi Dr Testdoc, thanks for the clear photos.\n\n"
        "Diagnosis: Nummular eczema\n"
        "Plan: Triamcinolone 0.1% ointment twice daily\n"
        "ICD-10: L30.0\n"
        "Image quality: adequate with suggestions\n"
        "Biopsy: yes - punch biopsy of the edge\n\n"
        "Thanks,\n"
        "Dr Example Derm\n"
    )
    assert result.kind == "consult"
    assert result.plan == "Triamcinolone 0.1% ointment twice daily"
    assert result.icd10 == "L30.0"
    assert result.image_quality == "adequate with suggestions"
    assert result.biopsy == "yes - punch biopsy of the edge"
    assert result.problems == ()
    assert result.text.endswith("Dr Example Derm")  # the text is kept whole


def test_sign_off_after_a_multi_paragraph_plan_is_not_part_of_it() -> None:
    result = parse_answer("Diagnosis: Psoriasis\nPlan: Calcipotriol cream\n\nBest regards,\nDr Y")
    assert result.plan == "Calcipotriol cream"


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("Dx: Tinea corporis", "diagnosis", "Tinea corporis"),
        ("IMPRESSION: Tinea corporis", "diagnosis", "Tinea corporis"),
        ("Assessment: Tinea corporis", "diagnosis", "Tinea corporis"),
        ("Suspected diagnosis: Tinea corporis", "diagnosis", "Tinea corporis"),
        ("Working diagnosis: Tinea corporis", "diagnosis", "Tinea corporis"),
        ("DDx: Psoriasis", "differential", "Psoriasis"),
        ("Differential diagnosis: Psoriasis", "differential", "Psoriasis"),
        ("Differentials: Psoriasis", "differential", "Psoriasis"),
        ("Treatment: Terbinafine cream", "plan", "Terbinafine cream"),
        ("Treatment plan: Terbinafine cream", "plan", "Terbinafine cream"),
        ("Management: Terbinafine cream", "plan", "Terbinafine cream"),
        ("Recommendations: Terbinafine cream", "plan", "Terbinafine cream"),
        ("Rx: Terbinafine cream", "plan", "Terbinafine cream"),
        ("Follow up: 6 weeks", "follow_up", "6 weeks"),
        ("F/U: 6 weeks", "follow_up", "6 weeks"),
        ("Followup: 6 weeks", "follow_up", "6 weeks"),
        ("Review: 6 weeks", "follow_up", "6 weeks"),
        ("In person: routine", "in_person", "routine"),
        ("Visit: routine", "in_person", "routine"),
        ("Referral: routine", "in_person", "routine"),
        ("Disposition: routine", "in_person", "routine"),
        ("Next step: routine", "in_person", "routine"),
        ("See in person: routine", "in_person", "routine"),
        ("Bx: not needed", "biopsy", "not needed"),
        ("Tests: KOH scraping", "biopsy", "KOH scraping"),
        ("Investigations: KOH scraping", "biopsy", "KOH scraping"),
        ("ICD10: B35.4", "icd10", "B35.4"),
        ("ICD: B35.4", "icd10", "B35.4"),
        ("Code: B35.4", "icd10", "B35.4"),
        ("Codes: B35.4", "icd10", "B35.4"),
        ("Photo quality: good", "image_quality", "adequate"),
        ("Images: good", "image_quality", "adequate"),
    ],
)
def test_synonyms(text: str, field: str, value: str) -> None:
    given_fields = {"diagnosis": "Diagnosis: Tinea corporis", "plan": "Plan: Terbinafine cream"}
    given_fields[field] = text
    result = parse_answer("\n".join(given_fields.values()))
    assert result.kind == "consult"
    assert getattr(result, field) == value
    assert result.problems == ()


def test_multi_line_plan() -> None:
    result = parse_answer(
        "Diagnosis: Seborrheic dermatitis\n"
        "Plan:\n"
        "- Ketoconazole 2% shampoo twice weekly\n"
        "Face: hydrocortisone 1% cream for flares\n"
        "  continue for 2 weeks\n"
        "Follow-up: 8 weeks\n"
    )
    assert result.plan == (
        "- Ketoconazole 2% shampoo twice weekly\n"
        "Face: hydrocortisone 1% cream for flares\n"
        "continue for 2 weeks"
    )
    assert result.follow_up == "8 weeks"


def test_plan_continues_on_the_next_line() -> None:
    result = parse_answer("Diagnosis: Acne vulgaris\nPlan: Adapalene 0.1% gel nightly,\nSPF daily")
    assert result.plan == "Adapalene 0.1% gel nightly,\nSPF daily"


def test_missing_diagnosis() -> None:
    result = parse_answer("Plan: Emollients\nIn-person visit: routine\n")
    assert result.kind == "consult"
    assert result.missing == ("Diagnosis",)
    assert result.in_person == "routine"


def test_missing_plan() -> None:
    result = parse_answer("Diagnosis: Lichen planus\nDifferential: Lichenoid drug eruption\n")
    assert result.kind == "consult"
    assert result.missing == ("Plan",)


def test_empty_fields_are_missing() -> None:
    result = parse_answer("Diagnosis:\nPlan:\n")
    assert result.kind == "consult"
    assert result.missing == ("Diagnosis", "Plan")


def test_more_info() -> None:
    result = parse_answer(
        "More info: Could you send a close-up with a ruler?\n"
        "And has the patient used any new soaps?\n"
    )
    assert result.kind == "more_info"
    assert result.question == (
        "Could you send a close-up with a ruler?\nAnd has the patient used any new soaps?"
    )
    assert result.problems == ()


@pytest.mark.parametrize("label", ["More information", "Question", "Need more info", "Request"])
def test_more_info_synonyms(label: str) -> None:
    result = parse_answer(f"{label}: Is the lesion tender?")
    assert result.kind == "more_info"
    assert result.question == "Is the lesion tender?"


def test_more_info_with_diagnosis_is_a_consult() -> None:
    result = parse_answer("Diagnosis: Psoriasis\nPlan: Clobetasol\nMore info: Any joint pain?\n")
    assert result.kind == "consult"
    assert result.question == ""
    assert "More info ignored because a diagnosis was given" in result.problems


def test_more_info_with_plan_but_no_diagnosis_is_a_question() -> None:
    result = parse_answer("More info: Any joint pain?\nPlan: Clobetasol meanwhile\n")
    assert result.kind == "more_info"
    assert result.problems == ("Plan ignored because more information was requested",)


def test_more_info_without_a_question() -> None:
    result = parse_answer("More info:\n")
    assert result.kind == "comment"
    assert result.question == ""
    assert result.problems == ("More info has no question, so nothing was asked",)


def test_decline_with_reason() -> None:
    result = parse_answer("Decline: Outside my area (paediatric hair loss); please reassign.")
    assert result == Answer(
        kind="decline",
        reason="Outside my area (paediatric hair loss); please reassign.",
        text="Decline: Outside my area (paediatric hair loss); please reassign.",
    )


@pytest.mark.parametrize("text", ["Decline:", "Declined", "Unable to review:", "*Decline:*"])
def test_decline_without_reason(text: str) -> None:
    result = parse_answer(text)
    assert result.kind == "decline"
    assert result.reason == "no reason given"
    assert result.problems == ("Decline has no reason; please say why the case is declined",)


def test_decline_synonyms() -> None:
    result = parse_answer("Cannot review: conflict of interest")
    assert (result.kind, result.reason) == ("decline", "conflict of interest")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Close", ""),
        ("close.", ""),
        ("Closed", ""),
        ("Close case", ""),
        ("Close: resolved with treatment", "resolved with treatment"),
        ("Glad it cleared up, thanks for letting me know.\n\nClose", ""),
    ],
)
def test_close(text: str, reason: str) -> None:
    result = parse_answer(text)
    assert result.kind == "close"
    assert result.reason == reason
    assert result.text == text.strip()


def test_plain_comment() -> None:
    text = (
        "Thanks for the update. If it is not better in 2 weeks, stop the cream\n"
        "and let me know: we can consider a biopsy then.\n\nDr Example Derm"
    )
    result = parse_answer(text)
    assert result == Answer(kind="comment", text=text)


def test_follow_up_alone_is_a_comment() -> None:
    result = parse_answer("Follow-up: please send new photos in 4 weeks")
    assert result.kind == "comment"
    assert result.text == "Follow-up: please send new photos in 4 weeks"


def test_empty_reply() -> None:
    result = parse_answer("\n\n")
    assert result == Answer(kind="comment", problems=("The reply has no new text",))


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("no", "not needed"),
        ("None", "not needed"),
        ("not needed", "not needed"),
        ("Not required.", "not needed"),
        ("manage in primary care", "not needed"),
        ("no - manage in primary care", "not needed"),
        ("routine", "routine"),
        ("Yes", "routine"),
        ("non-urgent", "routine"),
        ("elective", "routine"),
        ("urgent", "urgent within 2 weeks"),
        ("Urgent within 2 weeks", "urgent within 2 weeks"),
        ("urgent - within 2 weeks", "urgent within 2 weeks"),
        ("within 2 weeks", "urgent within 2 weeks"),
        ("2 weeks", "urgent within 2 weeks"),
        ("soon", "urgent within 2 weeks"),
        ("yes, urgent", "urgent within 2 weeks"),
        ("same day", "same day"),
        ("Same-day", "same day"),
        ("today", "same day"),
        ("emergency", "same day"),
        ("immediately", "same day"),
        ("ED", "same day"),
        ("*routine*", "routine"),
    ],
)
def test_in_person_normalisation(value: str, normalised: str) -> None:
    result = parse_answer(f"Diagnosis: Basal cell carcinoma\nPlan: Excision\nIn person: {value}")
    assert result.in_person == normalised
    assert result.problems == ()


def test_in_person_unknown_value() -> None:
    result = parse_answer("Diagnosis: Basal cell carcinoma\nPlan: Excision\nVisit: soonish")
    assert result.in_person == ""
    assert result.problems == (
        "In-person visit 'soonish' is not one of: not needed, routine, urgent within 2 weeks, "
        "same day",
    )


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("adequate", "adequate"),
        ("Good", "adequate"),
        ("adequate, but a ruler would help", "adequate with suggestions"),
        ("suboptimal: more light next time", "adequate with suggestions"),
        ("not diagnostic", "not diagnostic"),
        ("Non-diagnostic (blurred)", "not diagnostic"),
        ("poor", "not diagnostic"),
    ],
)
def test_image_quality_normalisation(value: str, normalised: str) -> None:
    result = parse_answer(f"Diagnosis: Melanocytic naevus\nPlan: Reassure\nImage quality: {value}")
    assert result.image_quality == normalised
    assert result.problems == ()


def test_image_quality_unknown_value() -> None:
    result = parse_answer("Diagnosis: Melanocytic naevus\nPlan: Reassure\nImage quality: meh")
    assert result.image_quality == ""
    assert result.problems == (
        "Image quality 'meh' is not one of: adequate, adequate with suggestions, not diagnostic",
    )


@pytest.mark.parametrize(
    ("value", "codes", "problems"),
    [
        ("L30.0", "L30.0", ()),
        ("l30.0, L40.0", "L30.0, L40.0", ()),
        ("L40; C43.9", "L40, C43.9", ()),
        ("L30.0 nummular dermatitis", "L30.0", ()),
        ("Nummular dermatitis (L30.0)", "L30.0", ()),
        ("L309", "L30.9", ()),
        ("C4A.9", "C4A.9", ()),
        ("L30.0, L30.0", "L30.0", ()),
        ("L30.0.", "L30.0", ()),
        ("n/a", "", ()),
        ("L3, L30.0", "L30.0", ("ICD-10 'L3' is not a valid code (like L30.0 or C43.9)",)),
        ("L30.12345", "", ("ICD-10 'L30.12345' is not a valid code (like L30.0 or C43.9)",)),
        ("eczema", "", ("ICD-10 'eczema' is not a code (like L30.0)",)),
    ],
)
def test_icd10(value: str, codes: str, problems: tuple[str, ...]) -> None:
    result = parse_answer(f"Diagnosis: Nummular eczema\nPlan: Emollients\nICD-10: {value}\n")
    assert result.icd10 == codes
    assert result.problems == problems


@pytest.mark.parametrize(
    ("value", "codes", "written"),
    [
        ("L30.0", "L30.0", ""),
        ("L30.0, L3x9", "L30.0", "L3x9"),
        ("eczema; L40", "L40", "eczema"),
        ("L3, L30.12345", "", "L3; L30.12345"),
        ("n/a", "", ""),
    ],
)
def test_what_is_no_code_in_the_icd10_line_is_kept_as_written(
        value: str, codes: str, written: str) -> None:
    result = parse_answer(f"Diagnosis: Nummular eczema\nPlan: Emollients\nICD-10: {value}\n")
    assert (result.icd10, result.icd10_text) == (codes, written)


@pytest.mark.parametrize(
    ("token", "code"),
    [("L30.0", "L30.0"), ("l300", "L30.0"), ("C4A.9", "C4A.9"), ("L40", "L40"),
     ("L3", None), ("L3x9", None), ("L30.12345", None), ("30.0", None), ("", None)],
)
def test_icd10_code_shape(token: str, code: str | None) -> None:
    assert icd10_code(token) == code


def test_outlook_bold_labels_and_blank_lines() -> None:
    text = (
        "Hello,\n\n\n"
        "*Diagnosis:* Nummular eczema\n\n"
        "*Differential:*\n\n"
        "Tinea corporis; plaque psoriasis\n\n"
        "**Plan**: Triamcinolone 0.1% ointment twice daily for 2 weeks\n\n"
        "Emollients several times a day\n\n"
        "*Follow-up:* 4 weeks\n\n"
        "*In-person visit:* *not needed*\n\n"
        "*Biopsy:* no\n\n"
        "Kind regards,\n\n"
        "Dr Example Derm\n"
    )
    result = parse_answer(text)
    assert result.kind == "consult"
    assert result.diagnosis == "Nummular eczema"
    assert result.differential == "Tinea corporis; plaque psoriasis"
    assert result.plan == (
        "Triamcinolone 0.1% ointment twice daily for 2 weeks\n\nEmollients several times a day"
    )
    assert result.follow_up == "4 weeks"
    assert result.in_person == "not needed"
    assert result.biopsy == "no"
    assert result.missing == ()
    assert result.problems == ()


def test_windows_line_endings() -> None:
    result = parse_answer(DESIGN_EXAMPLE.replace("\n", "\r\n"))
    assert result.diagnosis == "Nummular eczema"
    assert result.biopsy == "no"


NOTIFICATION = """Case DERM-2024-000123 is assigned to you.

Patient name: Jane Testpatient
Date of birth: 1961-03-03
Sex: Female
Reason for referral / question: Itchy coin-shaped plaques
Location on body: both shins

How to answer: reply with
Diagnosis: ...
Plan: ...
"""


def test_reply_with_quoted_notification_via_strip_quoted() -> None:
    quoted = "\n".join(f"> {line}" if line else ">" for line in NOTIFICATION.splitlines())
    raw = (
        f"{DESIGN_EXAMPLE}\n"
        "On Tue, 5 Mar 2024 at 10:00, Mailflow Cases <cases@mailflow.example> wrote:\n"
        f"{quoted}\n"
    )
    result = parse_answer(strip_quoted(raw))
    assert result.diagnosis == "Nummular eczema"
    assert result.plan.startswith("Triamcinolone")
    assert result.text == DESIGN_EXAMPLE.strip()
    assert result.problems == ()


def test_quoted_notification_is_ignored_without_strip_quoted() -> None:
    quoted = "\n".join(f"> {line}" for line in NOTIFICATION.splitlines())
    raw = f"Close: resolved\n\nOn Tue, 5 Mar 2024 at 10:00, Cases <c@x.example> wrote:\n{quoted}\n"
    result = parse_answer(raw)
    assert (result.kind, result.reason, result.text) == ("close", "resolved", "Close: resolved")


def test_unquoted_notification_below_the_answer_is_ignored() -> None:
    # Some clients paste the original below without quote marks or a recognisable header.
    history = NOTIFICATION.split("\n\n", 1)[1]  # from "Patient name:" on
    raw = f"More info: Any new medications?\n\n{history}"
    result = parse_answer(raw)
    assert result.kind == "more_info"
    assert result.question == "Any new medications?"
    assert "Jane" not in result.text


def test_comment_text_stops_at_the_notification() -> None:
    result = parse_answer(f"Looks better, continue.\n\n{NOTIFICATION}")
    assert result.kind == "comment"
    assert result.text.startswith("Looks better, continue.")
    assert "Patient name" not in result.text and "Jane" not in result.text


@given(st.text())
def test_never_fails(text: str) -> None:
    result = parse_answer(text)
    assert result.kind in KINDS
    assert set(result.missing) <= {"Diagnosis", "Plan"}
