"""Each crash the fuzzers found, as the smallest input that showed it (its corpus file is in
tests/fuzz/corpus/ too)."""

from __future__ import annotations

from datetime import date

import pytest

from mailflow.parse import form
from mailflow.parse.dates import parse_date

TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(("text", "month"), [
    ("3 augu\u017ft 1961", 8),  # long s: re.I matched it to "s", lower() kept it: KeyError
    ("\u017fept 3, 1961", 9),
    ("1961 apr\u0130l 3", 4),  # dotted capital I
])
def test_a_month_name_the_pattern_matched_is_read(text: str, month: int) -> None:
    assert parse_date(text, TODAY) == date(1961, month, 3)


def test_case_form_with_such_a_date_of_birth() -> None:
    parsed = form.parse_case_form("Patient name: Jane Testpatient\n"
                                  "Date of birth: 3 augu\u017ft 1961\n", TODAY)
    assert parsed.date_of_birth == date(1961, 8, 3)
