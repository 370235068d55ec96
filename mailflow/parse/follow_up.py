"""The "New case: yes" line of a provider's reply: a new case for the same patient, not a
comment on the old one (README "The patient over time")."""

from __future__ import annotations

import re

_NEW_CASE = re.compile(
    r"^[ \t]*[*_]{0,2}new[ \t]+case[*_]{0,2}[ \t]*[:：=-][ \t]*(?:yes|y|true)\b[ \t.!]*$",
    re.IGNORECASE | re.MULTILINE)


def asks_new_case(text: str) -> bool:
    """A line `New case: yes` in the new text (quoted text is already stripped)."""
    return _NEW_CASE.search(text) is not None


def without_new_case_line(text: str) -> str:
    """The text without that line, so the case form does not list it as not understood."""
    return _NEW_CASE.sub("", text)
