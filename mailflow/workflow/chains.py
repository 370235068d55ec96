"""The routing engine: a chain is a table of rows read top to bottom (Mailman's chains are the
model). Each row names an outcome, asks one question of the message (its predicate answers
why, or None), and acts when the answer is yes. An action returns the message's Outcome, or
None to let the next row look (a row that records something on the way, like the urgency a
reply asks for). A row's action may run another chain: that is a jump.

The tables themselves are in `router` (the top chain), `thread_chain` (replies on a case's
thread) and `answer_chain` (the dermatologist's answer); docs/decisions.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mailflow.workflow.context import Outcome

C = TypeVar("C")


@dataclass(frozen=True)
class Row(Generic[C]):
    name: str  # the outcome's name: the message's route, or its held reason code
    when: Callable[[C], str | None]  # why this row matches, or None
    then: Callable[[C, str], Outcome | None]  # what it does; None: the next row looks
    reason: str  # why the row is there, in a few words (docs and tests read it)


def run(chain: Sequence[Row[C]], ctx: C) -> Outcome:
    for row in chain:
        why = row.when(ctx)
        if why:
            outcome = row.then(ctx, why)
            if outcome is not None:
                return outcome
    raise AssertionError("every chain ends with a row that always decides")


def names(chain: Sequence[Row[C]]) -> list[str]:
    return [row.name for row in chain]


def otherwise(why: str) -> Callable[[object], str]:
    """The predicate of a chain's last row: it always matches, saying `why`."""

    def predicate(_ctx: object) -> str:
        return why

    return predicate
