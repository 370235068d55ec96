"""`Key: value` lines as people type them in mail, for the case form and the answer form."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

_MAX_LABEL = 40
_MAX_LABEL_WORDS = 6
# Optional list marker ("-", "*", "•", "1."), optional bold/italic markers around the label
# (Outlook and Gmail plain-text alternatives render <b>Label:</b> as *Label:*), the label,
# then ":" or the full-width "：".
_KEY_LINE = re.compile(
    r"^(?P<indent>[ \t]*)"
    r"(?P<bullet>(?:[-*•·◦▪]|\d{1,2}[.)])[ \t]+)?"
    r"[*_]{0,2}(?P<label>[^:：\n]{1,80}?)[*_]{0,2}[ \t]*[:：][*_]{0,2}"
    r"(?P<value>.*)$"
)
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_DROPPED = re.compile(r"[.'’]")
_NON_WORD = re.compile(r"[^\w]+")
_LEADING_PATIENT = re.compile(r"^(?:patients?|pt)\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SENTENCE_PUNCTUATION = re.compile(r"[,;!?\"<>=\\|]")


@dataclass(frozen=True)
class KeyValues:
    values: dict[str, str]  # canonical key -> value (trimmed; multi-line keeps line breaks)
    labels: dict[str, str]  # canonical key -> the label as written
    unknown_lines: tuple[str, ...] = ()  # "Label: value" lines whose label is not known
    unknown: tuple[tuple[str, str], ...] = ()  # the same as (label, value)
    repeated: tuple[str, ...] = ()  # canonical keys given more than once (the last one won)
    other_lines: tuple[str, ...] = ()  # non-blank text that belongs to no key


def normalize_label(label: str) -> str:
    """ "Pt. Name (legal)" -> "pt name", "D.O.B." -> "dob", "Date-of-birth" -> "date of birth"."""
    label = _PARENTHESES.sub(" ", label.lower())
    label = _DROPPED.sub("", label)
    return " ".join(_NON_WORD.sub(" ", label).replace("_", " ").split())


def _clean(text: str) -> str:
    """No control characters but newline; tabs become spaces (keeps values header-safe)."""
    return _CONTROL.sub("", text.replace("\t", " "))


class _Entry:
    def __init__(self, key: str | None, label: str, first: str, line: str, block: bool) -> None:
        self.key = key  # None for an unknown label
        self.label = label
        self.lines = [first] if first else []
        self.line = line
        self.block = block  # "Key:" alone, the value on the following lines
        self.closed = False  # a single-paragraph value ended at a blank line

    def value(self) -> str:
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        while lines and not lines[0]:
            lines.pop(0)
        return "\n".join(lines).strip().strip("*").strip()


def _plausible_label(label: str, value: str) -> bool:
    """Whether an unrecognised "X: y" reads as a label rather than text with a colon."""
    if len(label) > _MAX_LABEL or not label[:1].isalpha():
        return False
    if label[-1:].isdigit() and value[:1].isdigit():  # a time: "at 8:00"
        return False
    if value.startswith("//"):  # a URL: "see https://..."
        return False
    if _SENTENCE_PUNCTUATION.search(label):
        return False
    words = normalize_label(label).split()
    return 0 < len(words) <= _MAX_LABEL_WORDS and not all(w.isdigit() for w in words)


def parse_key_values(
    text: str,
    synonyms: Mapping[str, str],
    single_paragraph: Collection[str] = (),
    *,
    unknown_labels: bool = True,
) -> KeyValues:
    """Read `Label: value` lines. `synonyms` maps labels (normalized here) to canonical keys.

    A line that is not a recognised key line continues the value above it. Keys listed in
    `single_paragraph` end at a blank line, so a signature below the last field does not
    become part of it. Only the first colon splits; an unrecognised label that does not
    look like one ("at 8:00", a sentence, a URL) is text, not a new key. With
    `unknown_labels=False` every unrecognised label is text: for free-text answers, where
    "Face: hydrocortisone 1%" inside a plan belongs to the plan.
    """
    lookup = {normalize_label(k): v for k, v in synonyms.items()}
    entries: list[_Entry] = []
    other: list[str] = []
    current: _Entry | None = None
    for raw_line in _clean(text.replace("\r\n", "\n").replace("\r", "\n")).split("\n"):
        line = raw_line.rstrip()
        entry = _key_line(line, lookup, current, unknown_labels)
        if entry is not None:
            entries.append(entry)
            current = entry
            continue
        if current is None or current.closed:
            if line.strip():
                other.append(line.strip())
            continue
        if not line.strip():
            if current.lines:
                current.block = False  # a list under "Key:" ends at its first blank line
            if current.key in single_paragraph and current.lines:
                current.closed = True
            else:
                current.lines.append("")
            continue
        current.lines.append(line.strip())
    return _collect(entries, other)


def _lookup(label: str, lookup: Mapping[str, str]) -> str | None:
    """The canonical key for a label; "Patient DOB" and "Chart/MRN" are tried in parts."""
    for candidate in (label, *label.split("/")):
        normalized = normalize_label(candidate)
        key = lookup.get(normalized) or lookup.get(_LEADING_PATIENT.sub("", normalized))
        if key is not None:
            return key
    return None


def _key_line(
    line: str, lookup: Mapping[str, str], current: _Entry | None, unknown_labels: bool = True
) -> _Entry | None:
    match = _KEY_LINE.match(line)
    if match is None:
        return None
    label = match.group("label").strip().strip("*_").strip()
    value = match.group("value").strip()
    key = _lookup(label, lookup)
    block = not value
    if key is not None:
        return _Entry(key, label, value, line.strip(), block)
    if not unknown_labels or not _plausible_label(label, value):
        return None
    # Inside a value that began on its own lines ("Treatments:" then the list), or on an
    # indented line, "Hydrocortisone: no effect" is part of that value.
    if current is not None and not current.closed and (current.block or match.group("indent")):
        return None
    return _Entry(None, label, value, line.strip(), block)


def _collect(entries: list[_Entry], other: list[str]) -> KeyValues:
    values: dict[str, str] = {}
    labels: dict[str, str] = {}
    repeated: list[str] = []
    unknown: list[tuple[str, str]] = []
    unknown_lines: list[str] = []
    for entry in entries:
        if entry.key is None:
            unknown.append((entry.label, entry.value()))
            unknown_lines.append(entry.line)
            continue
        if entry.key in values and entry.key not in repeated:
            repeated.append(entry.key)
        values[entry.key] = entry.value()
        labels[entry.key] = entry.label
    return KeyValues(
        values=values,
        labels=labels,
        unknown_lines=tuple(unknown_lines),
        unknown=tuple(unknown),
        repeated=tuple(repeated),
        other_lines=tuple(other),
    )
