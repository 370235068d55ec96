"""Calendar dates as people type them (US service: 03/04/1961 is March 4)."""

from __future__ import annotations

import re
from datetime import date

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4}|\d{2})"
_PATTERNS = (
    re.compile(r"\b(?P<year>\d{4})[-/.](?P<month>\d{1,2})[-/.](?P<day>\d{1,2})\b"),
    re.compile(r"\b(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.]" + _YEAR + r"\b"),
    re.compile(r"\b" + _MONTH + r"[\s-]+" + _DAY + r",?[\s-]+" + _YEAR + r"\b", re.I),
    re.compile(r"\b" + _DAY + r"[\s-]+" + _MONTH + r",?[\s-]+" + _YEAR + r"\b", re.I),
    re.compile(r"\b(?P<year>\d{4})[\s-]+" + _MONTH + r"[\s-]+" + _DAY + r"\b", re.I),
    re.compile(r"\b(?P<year>(?:19|20)\d{2})(?P<month>\d{2})(?P<day>\d{2})\b"),
)


def _full_year(year: str, today: date) -> int:
    if len(year) == 4:
        return int(year)
    # Two digits: the most recent year that is not in the future ("61" -> 1961, "15" -> 2015).
    candidate = 2000 + int(year)
    return candidate if candidate <= today.year else candidate - 100


def _month(value: str) -> int:
    if value.isdigit():
        return int(value)
    # The case-insensitive pattern matched it, and re.I takes "ſ" (long s) for "s" and "İ"
    # for "i" where lower() does not: ask the same question the pattern asked.
    return next(n for name, n in _MONTHS.items() if re.fullmatch(name, value.rstrip("."), re.I))


def parse_date(text: str, today: date) -> date | None:
    """The first date found in `text`, or None. Numeric dates are month first unless the
    first number cannot be a month (25/03/1961)."""
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        groups = match.groupdict()
        year = _full_year(groups["year"], today)
        if groups.get("a") is not None:
            first, second = int(groups["a"]), int(groups["b"])
            month, day = (second, first) if first > 12 else (first, second)
        else:
            month, day = _month(groups["month"]), int(groups["day"])
        try:
            return date(year, month, day)
        except ValueError:
            return None
    return None
