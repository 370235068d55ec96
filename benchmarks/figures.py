"""What every benchmark computes its figures with: a percentile, a timed call, a verdict."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between closest ranks (as numpy's default); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes (perf_counter)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def verdict(ok: bool) -> str:
    """A target met is OK; a missed one is printed MISSED, never raised."""
    return "OK" if ok else "MISSED"
