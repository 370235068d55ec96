"""Times and targets in the words a provider uses (issue #9 item 7)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mailflow.sla.words import deadline_in_words, when_in_words, working_hours_in_words

ET = ZoneInfo("America/New_York")
FRIDAY_EVENING = datetime(2026, 11, 27, 18, 30, tzinfo=ET)


@pytest.mark.parametrize("at, words", [
    (datetime(2026, 11, 27, 21, 5, tzinfo=ET), "21:05 ET today"),
    (datetime(2026, 11, 28, 9, 0, tzinfo=ET), "9:00 ET tomorrow (Saturday)"),
    (datetime(2026, 11, 30, 9, 0, tzinfo=ET), "9:00 ET Monday"),
    (datetime(2026, 12, 7, 9, 30, tzinfo=ET), "9:30 ET on Mon 7 Dec 2026"),
])
def test_times_have_no_leading_zero_and_name_the_day(at: datetime, words: str) -> None:
    assert when_in_words(at, FRIDAY_EVENING, ET) == words
    assert deadline_in_words(at, FRIDAY_EVENING, ET) == f"by {words}"


@pytest.mark.parametrize("minutes, words", [
    (120, "2 working hours"), (60, "1 working hour"), (90, "90 working minutes"),
])
def test_targets_are_working_hours(minutes: float, words: str) -> None:
    assert working_hours_in_words(minutes) == words
