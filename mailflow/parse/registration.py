"""The provider registration form (register@): name, practice, NPI, phone, license state."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailflow.parse.keyvalue import parse_key_values

LABELS: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "your name", "provider name", "provider"),
    "practice": ("practice", "practice name", "clinic", "organization", "organisation"),
    "npi": ("npi", "npi number", "national provider identifier"),
    "phone": ("phone", "phone number", "telephone", "tel", "mobile", "cell"),
    "license_state": ("license state", "licence state", "state", "state of license",
                      "licensed in", "license"),
    "email": ("email", "e-mail", "email address"),
    "credentials": ("credentials", "title", "degree"),
}  # fmt: skip
SYNONYMS = {label: key for key, labels in LABELS.items() for label in labels}
REQUIRED = ("name", "practice", "npi", "phone", "license_state")
NAMES = {
    "name": "Name",
    "practice": "Practice",
    "npi": "NPI",
    "phone": "Phone",
    "license_state": "License state",
    "email": "Email",
    "credentials": "Credentials",
}
LIMITS = {"name": 200, "practice": 200, "phone": 40, "email": 320, "credentials": 100}  # columns
US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
        "GU",
        "VI",
        "AS",
        "MP",
    ]
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Registration:
    fields: dict[str, str]
    problems: tuple[str, ...]  # people-readable: what is missing or wrong


def npi_is_valid(npi: str) -> bool:
    """The NPI check digit: Luhn over the digits prefixed with 80840 (CMS's definition)."""
    if not re.fullmatch(r"\d{10}", npi):
        return False
    digits = [int(d) for d in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return total % 10 == 0


def parse_registration(text: str) -> Registration:
    found = parse_key_values(text, SYNONYMS, single_paragraph=tuple(LABELS))
    return check_fields(found.values)


def check_fields(values: dict[str, str], required: tuple[str, ...] = REQUIRED) -> Registration:
    """Tidy and check a registration's fields, however they came (an email or the web form):
    the one place that says what a usable registration is."""
    fields = {k: " ".join(v.split()) for k, v in values.items() if k in NAMES and v.strip()}
    problems = [f"{NAMES[k]} is missing" for k in required if not fields.get(k)]
    problems += [f"{NAMES[k]} is too long (at most {LIMITS[k]} characters)"
                 for k in LIMITS if len(fields.get(k, "")) > LIMITS[k]]
    if "npi" in fields:
        fields["npi"] = re.sub(r"[\s-]", "", fields["npi"])
        if not npi_is_valid(fields["npi"]):
            problems.append(f"NPI {fields['npi']!r} is not a valid 10-digit NPI")
    if "license_state" in fields:
        state = fields["license_state"].upper().replace(".", "")
        if state not in US_STATES:
            problems.append(
                f"License state {fields['license_state']!r} is not a US state code (e.g. NY)"
            )
        fields["license_state"] = state
    if "email" in fields:
        fields["email"] = fields["email"].lower()
        if not _EMAIL.match(fields["email"]):
            problems.append(f"Email {fields['email']!r} is not an email address")
    return Registration(fields, tuple(problems))
