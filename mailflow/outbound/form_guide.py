"""The case form as providers see it (help, registration and acknowledgement emails), built
from the parser's own list of fields and synonyms so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailflow.parse.fields import field_label
from mailflow.parse.form import LABELS, REQUIRED
from mailflow.parse.keyvalue import normalize_label
from mailflow.parse.views import ADDITIONAL, CLOSE_UP, DISTRIBUTION, OBLIQUE

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


# --- the web's forms: the phone page's photo fields and the new-case form -----------------

@dataclass(frozen=True)
class PhotoField:
    name: str  # in the page and the upload's request
    view: str  # parse/views.py's name for it
    caption: str  # the photo's caption in the message: its words name the view to the parser
    title: str
    guide: str  # how to take it, in a line
    picture: str  # the picture guide, under /static/


PHOTO_FIELDS: tuple[PhotoField, ...] = (
    PhotoField("distribution", DISTRIBUTION, "whole area (distribution)",
               "The whole area", "Step back so the whole rash or spot shows, with enough of the "
               "body around it to see where it is.", "guide-distribution.svg"),
    PhotoField("close-up", CLOSE_UP, "close-up from the front",
               "A close-up from the front", "Hold the phone straight over the skin, about a "
               "hand's width away. A ruler beside it helps.", "guide-close-up.svg"),
    PhotoField("oblique", OBLIQUE, "close-up from an angle (oblique)",
               "A close-up from an angle", "Same distance, from the side, so we can see if it "
               "is raised or flat.", "guide-oblique.svg"),
    PhotoField("additional", ADDITIONAL, "additional photo",
               "An extra photo (if you like)", "Anything else that helps: another spot, or a "
               "photo through a dermatoscope.", "guide-additional.svg"),
)
PHOTO_FIELD = {f.name: f for f in PHOTO_FIELDS}


def photo_fields(views: Sequence[str]) -> list[PhotoField]:
    """A field for each of these required views, in the guide's order, then an extra one."""
    return [f for f in PHOTO_FIELDS if f.view in views or f.view == ADDITIONAL]


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    required: bool
    hint: str
    default: str
    choices: tuple[str, ...]  # a few fixed answers: a menu
    long: bool  # a box for several lines


CHOICES: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male", "other"),
    "consent": ("yes", "no"),
    "urgency": ("routine", "urgent"),
}
LONG = frozenset({"question", "symptoms", "evolution", "treatments", "medications", "history"})


def web_form() -> list[FormField]:
    """The emailed form's fields, in its order, for the web's "Start a new case"."""
    return [FormField(key, field_label(key), key in REQUIRED, HINTS.get(key, ""),
                      DEFAULTS.get(key, ""), CHOICES.get(key, ()), key in LONG)
            for key in LABELS]
