"""The case form as providers see it (help, registration and acknowledgement emails), built
from the parser's own list of fields and synonyms so the two cannot drift apart."""

from __future__ import annotations

from mailflow.parse.fields import field_label
from mailflow.parse.form import LABELS, REQUIRED
from mailflow.parse.keyvalue import normalize_label

# Short hints after a label, in parentheses (the parser ignores anything in parentheses).
HINTS: dict[str, str] = {
    "date_of_birth": "YYYY-MM-DD",
    "sex": "female, male or other",
    "symptoms": "itch, pain, bleeding",
    "evolution": "size, shape, colour changes",
    "consent": "yes or no",
    "urgency": "routine or urgent",
}
DEFAULTS: dict[str, str] = {"urgency": "routine"}
REQUIRED_MARK = "required"
OTHER_NAMES_SHOWN = 2  # a phone screen has room for a couple of synonyms, not all of them


def form_lines() -> list[str]:
    """One "Label (hint): default" line per field, in the parser's order."""
    lines = []
    for key in LABELS:
        notes = [REQUIRED_MARK] if key in REQUIRED else []
        if key in HINTS:
            notes.append(HINTS[key])
        label = field_label(key) + (f" ({'; '.join(notes)})" if notes else "")
        lines.append(f"{label}: {DEFAULTS.get(key, '')}")  # the space invites typing
    return lines


def case_form_text() -> str:
    return "\n".join(form_lines())


def other_names(key: str) -> list[str]:
    """A few synonyms the parser accepts for a field, short ones first, not the label itself."""
    own = normalize_label(field_label(key))
    names = {n for n in LABELS[key] if len(n) > 2 and own not in n}
    shortest = sorted(names, key=lambda n: (len(n), n))[:OTHER_NAMES_SHOWN]
    return [n.upper() if len(n) <= 3 else n.capitalize() for n in shortest]


def required_fields() -> list[dict[str, object]]:
    """The required lines, for the help text: the label and other names that work."""
    return [{"label": field_label(k), "other_names": other_names(k)} for k in REQUIRED]
