"""SLA statistics shared by `mailflow sla report` and the charts page: one percentile."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (inclusive method); None when nothing was measured.

    A zero is a value: a consult answered at once counts like any other.
    """
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
