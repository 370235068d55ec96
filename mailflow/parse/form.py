"""The case form a provider types into the body of a new case (DESIGN §1)."""

from __future__ import annotations

import re
from datetime import date

from mailflow.parse.dates import parse_date
from mailflow.parse.keyvalue import parse_key_values
from mailflow.parse.types import CaseForm

REQUIRED = (
    "patient_name", "date_of_birth", "sex", "question", "location", "duration", "consent",
)

# Canonical key -> labels providers use (compared after normalize_label, so case, dots and
# extra spaces do not matter; a leading "patient"/"pt" is also tried without).
LABELS: dict[str, tuple[str, ...]] = {
    "patient_name": (
        "name", "patient", "patient name", "patients name", "pt name", "pt", "full name",
        "patient full name", "pt full name",
    ),
    "date_of_birth": (
        "dob", "date of birth", "birth date", "birthdate", "d.o.b.", "born", "birthday",
    ),
    "sex": ("sex", "gender", "sex gender", "gender sex"),
    "mrn": (
        "chart", "mrn", "chart number", "chart no", "chart #", "medical record number",
        "medical record", "record", "record number", "mr number", "mr no",
    ),
    "question": (
        "reason", "reason for referral", "referral reason", "question", "clinical question",
        "referral question", "question for dermatologist", "question for dermatology",
        "questions", "request", "reason for consult", "concern",
    ),
    "location": (
        "location", "site", "location on body", "body site", "body location", "where",
        "lesion location", "location of lesion", "anatomic site", "anatomical site",
        "affected area", "area",
    ),
    "duration": (
        "duration", "how long", "onset", "since", "duration of lesion", "duration of rash",
        "time course", "present for",
    ),
    "symptoms": (
        "symptoms", "symptom", "itch", "itching", "pain", "bleeding",
        "symptoms itch pain bleeding",
    ),
    "evolution": (
        "evolution", "changes", "change", "evolution changes", "changes in size",
        "change in size shape colour", "change in size shape color", "progression",
    ),
    "treatments": (
        "treatments", "treatments tried", "treatment tried", "prior treatment",
        "prior treatments", "previous treatment", "previous treatments", "tried",
        "treatment", "treatments tried and response", "treatment response",
    ),
    "medications": (
        "medications", "meds", "current medications", "current meds", "medication",
        "current medication", "drugs",
    ),
    "allergies": ("allergies", "allergy", "drug allergies", "known allergies"),
    "history": (
        "history", "past medical history", "pmh", "medical history", "pmhx", "relevant history",
    ),
    "family_history": (
        "family history", "family history of skin cancer", "fhx", "fh", "family hx",
    ),
    "fitzpatrick": (
        "fitzpatrick", "fitzpatrick skin type", "skin type", "fitzpatrick type",
        "fitzpatrick phototype", "phototype",
    ),
    "pregnant": (
        "pregnant", "pregnant or nursing", "pregnancy", "nursing", "pregnant nursing",
        "breastfeeding", "pregnant or breastfeeding",
    ),
    "immunosuppressed": (
        "immunosuppressed", "immunosuppression", "immunocompromised", "immune status",
    ),
    "consent": (
        "consent", "patient consent", "photo consent", "patient consent to photos",
        "consent to photos", "photo consent obtained", "consent obtained",
    ),
    "urgency": ("urgency", "priority"),
}  # fmt: skip
SYNONYMS = {label: key for key, labels in LABELS.items() for label in labels}
# Values that are one line or one paragraph: a blank line ends them, so a sign-off under
# the last field is not read as part of it.
SINGLE_PARAGRAPH = frozenset(
    {
        "patient_name", "date_of_birth", "sex", "mrn", "location", "duration", "medications",
        "allergies", "fitzpatrick", "pregnant", "immunosuppressed", "consent", "urgency",
    }
)  # fmt: skip

_CAPTION = re.compile(
    r"^[ \t]*(?:[-*•][ \t]+)?[*_]{0,2}"
    r"(?:(?:photo|image|picture|pic|img|foto)[ \t]*(?:no\.?|number|#)?[ \t]*(?P<num>\d{1,3})"
    r"|(?P<file>[^\s:/\\*][^:/\\\n]{0,120}?\.(?:jpe?g|png|heic|heif|webp|gif|tiff?|bmp)))"
    r"[*_]{0,2}[ \t]*(?:[:：]|[-–—])[ \t]*(?P<caption>\S.*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_SEX = {
    "f": "female", "female": "female", "woman": "female", "w": "female", "girl": "female",
    "m": "male", "male": "male", "man": "male", "boy": "male",
    "other": "other", "x": "other", "nonbinary": "other", "non-binary": "other",
    "non binary": "other", "intersex": "other", "nb": "other",
}  # fmt: skip
_ROUTINE = {"routine", "normal", "non-urgent", "non urgent", "nonurgent", "standard", "low"}
_URGENT = {"urgent", "high", "asap", "urgently", "stat"}
_YES = {"yes", "y", "yes.", "true", "obtained", "given", "verbal", "written", "agreed", "ok"}
_NO = {"no", "n", "false", "declined", "refused", "denied", "not"}
_ROMAN = ("I", "II", "III", "IV", "V", "VI")
_FITZPATRICK = re.compile(r"\b(VI|IV|V|III|II|I|[1-6])\b")
_FIRST_WORD = re.compile(r"[a-z][a-z-]*(?: binary)?|[a-z]")
_MAX_AGE_YEARS = 130


def _first_word(value: str) -> str:
    match = _FIRST_WORD.search(value.lower())
    return match.group(0) if match else ""


def _captions(text: str) -> tuple[str, dict[str, str]]:
    """Caption lines ("Photo 1: close-up", "IMG_1234.jpg - wide") and the text without them."""
    captions: dict[str, str] = {}

    def take(match: re.Match[str]) -> str:
        key = match.group("num") or match.group("file").strip()
        captions[str(int(key)) if key.isdigit() else key] = match.group("caption")
        return "\x00"  # marks the line for removal below

    remaining = _CAPTION.sub(take, text)
    kept = [line for line in remaining.split("\n") if line != "\x00"]
    return "\n".join(kept), captions


def sex_of(value: str) -> str:
    word = value.strip().lower().rstrip(".")
    return _SEX.get(word) or _SEX.get(_first_word(value), "")


def urgency_of(value: str) -> str:
    word = value.strip().lower().rstrip(".!")
    if word in _ROUTINE or _first_word(value) in _ROUTINE:
        return "routine"
    if word in _URGENT or _first_word(value) in _URGENT:
        return "urgent"
    return ""


def _consent(value: str) -> str:
    word = _first_word(value)
    if word in _YES:
        return "yes"
    if word in _NO:
        return "no"
    return ""


def _fitzpatrick(value: str) -> str:
    match = _FITZPATRICK.search(value.upper().replace("TYPE", " "))
    if match is None:
        return ""
    token = match.group(1)
    return _ROMAN[int(token) - 1] if token.isdigit() else token


def _date_of_birth(value: str, today: date, invalid: list[tuple[str, str]]) -> date | None:
    born = parse_date(value, today)
    if born is None:
        invalid.append(("date_of_birth", f"{value!r} is not a date we can read (use YYYY-MM-DD)"))
        return None
    if born > today:
        invalid.append(("date_of_birth", f"{born.isoformat()} is in the future"))
        return None
    if today.year - born.year - ((today.month, today.day) < (born.month, born.day)) > (
        _MAX_AGE_YEARS
    ):
        invalid.append(("date_of_birth", f"{born.isoformat()} is over {_MAX_AGE_YEARS} years ago"))
        return None
    return born


def parse_case_form(text: str, today: date | None = None) -> CaseForm:
    """Read the case form from a message body (already without quoted text).

    `today` is for validating the date of birth; it defaults to the local date.
    """
    today = today or date.today()
    body, captions = _captions(text.replace("\r\n", "\n").replace("\r", "\n"))
    kv = parse_key_values(body, SYNONYMS, SINGLE_PARAGRAPH)
    fields = dict(kv.values)
    invalid: list[tuple[str, str]] = []

    born = None
    if fields.get("date_of_birth"):
        born = _date_of_birth(fields["date_of_birth"], today, invalid)

    sex = sex_of(fields["sex"]) if fields.get("sex") else ""
    if fields.get("sex") and not sex:
        invalid.append(("sex", f"{fields['sex']!r} is not one of female, male or other"))

    urgency = "routine"
    if fields.get("urgency"):
        urgency = urgency_of(fields["urgency"]) or "routine"
        if not urgency_of(fields["urgency"]):
            invalid.append(("urgency", f"{fields['urgency']!r} is not routine or urgent"))

    if fields.get("consent"):
        consent = _consent(fields["consent"])
        if consent:
            fields["consent"] = consent
        else:
            invalid.append(("consent", f"{fields['consent']!r} is not yes or no"))
        if consent == "no":
            invalid.append(("consent", "the patient has not consented to photos"))

    if fields.get("fitzpatrick"):
        skin_type = _fitzpatrick(fields["fitzpatrick"])
        if skin_type:
            fields["fitzpatrick"] = skin_type
        else:
            invalid.append(("fitzpatrick", f"{fields['fitzpatrick']!r} is not a type I to VI"))

    return CaseForm(
        fields=fields,
        labels=dict(kv.labels),
        date_of_birth=born,
        sex=sex,
        urgency=urgency,
        missing=tuple(key for key in REQUIRED if not fields.get(key)),
        invalid=tuple(invalid),
        photo_captions=captions,
        unknown_lines=kv.unknown_lines,
    )
