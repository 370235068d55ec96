"""How the case form's fields and the photo views are named to people."""

from __future__ import annotations

from mailflow.parse.form import REQUIRED

FIELD_LABELS: dict[str, str] = {
    "patient_name": "Patient name",
    "date_of_birth": "Date of birth",
    "sex": "Sex",
    "mrn": "Chart/MRN",
    "question": "Reason for referral / question",
    "location": "Location on body",
    "duration": "Duration",
    "symptoms": "Symptoms",
    "evolution": "Evolution",
    "treatments": "Treatments tried and response",
    "medications": "Current medications",
    "allergies": "Allergies",
    "history": "Past medical history",
    "family_history": "Family history of skin cancer",
    "fitzpatrick": "Fitzpatrick skin type",
    "pregnant": "Pregnant or nursing",
    "immunosuppressed": "Immunosuppressed",
    "consent": "Patient consent to photos",
    "urgency": "Urgency",
}

REQUIRED_FIELDS = REQUIRED  # the parser's one list


def field_label(key: str) -> str:
    return FIELD_LABELS.get(key, key.replace("_", " ").capitalize())


def consult_title(version: int) -> str:
    """'Consult' for the first answer, 'Addendum N' for the Nth one after it: the web page and
    the PDF both name them with this, so that they number them alike."""
    return "Consult" if version <= 1 else f"Addendum {version - 1}"


def labelled_in_form_order(form: dict[str, str]) -> list[tuple[str, str]]:
    """(label, value) for each filled field, in the form's order (a completed case's fields
    come back from storage in another order)."""
    order = {key: i for i, key in enumerate(FIELD_LABELS)}
    keys = sorted(form, key=lambda key: order.get(key, len(order)))
    return [(field_label(key), form[key]) for key in keys if form[key]]
