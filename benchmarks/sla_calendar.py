"""Business-calendar benchmark: SLA deadlines (`add_business_minutes`) beside plain additions.

1. mailflow: a fresh calendar (schedules/calendar.toml, so its first use, which builds the
   year's table of open intervals, is counted) computes `add_business_minutes(start, m)` for
   1,000,000 starts (quick: 100,000), random instants over 2026 in US Eastern, m 60 or 120.
2. Baseline, in the same run and interleaved with 1 chunk by chunk over the same starts:
   `start + timedelta(minutes=m)`.
3. For information: `business_minutes_between` and `is_open` on the same starts.

Target: 1,000,000 deadlines in under 10 s on this 2-core machine (quick: 100,000 in 1 s).
A missed target is printed MISSED, never raised. Run alone: `python -m benchmarks calendar`.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.figures import timed, verdict
from mailflow.sla.calendar import BusinessCalendar, load_calendar

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S_PER_MILLION = 10.0
CHUNK = 100_000
NY = ZoneInfo("America/New_York")
YEAR_START = datetime(2026, 1, 1, tzinfo=NY)
YEAR_SECONDS = 365 * 86400


def _starts(rnd: random.Random, n: int) -> list[tuple[datetime, int]]:
    first = YEAR_START.timestamp()
    return [
        (datetime.fromtimestamp(first + rnd.randrange(YEAR_SECONDS), NY), rnd.choice((60, 120)))
        for _ in range(n)
    ]


Starts = list[tuple[datetime, int]]  # (start, business minutes to add)


def run(quick: bool = False) -> None:
    total = 100_000 if quick else 1_000_000
    rnd = random.Random(20261126)
    calendar: BusinessCalendar = load_calendar(ROOT / "schedules" / "calendar.toml")
    add = calendar.add_business_minutes
    plus = timedelta

    times = {"deadline": 0.0, "baseline": 0.0, "between": 0.0, "is_open": 0.0}
    first_use = 0.0
    load_before = os.getloadavg()[0]
    done = 0
    while done < total:
        batch = _starts(rnd, min(CHUNK, total - done))
        if done == 0:
            first_use = timed(lambda b=batch: add(b[0][0], b[0][1]))

        def deadlines(b: Starts = batch) -> None:
            for start, minutes in b:
                add(start, minutes)

        def baseline(b: Starts = batch) -> None:
            for start, minutes in b:
                start + plus(minutes=minutes)

        times["baseline"] += timed(baseline)
        times["deadline"] += timed(deadlines)
        if done == 0:  # information only, on the first chunk
            times["between"], times["is_open"] = _other_calls(calendar, batch)
        done += len(batch)
    load_after = os.getloadavg()[0]
    print()
    print(
        f"== SLA deadlines: {total:,} starts over 2026 (US Eastern), 60 or 120 business minutes, "
        f"calendar {calendar.version}; chunks of {CHUNK:,}, interleaved with the baseline =="
    )
    print(f"load average {load_before:.2f} before, {load_after:.2f} after (2 cores: >1 is noisy)")
    _print(times, total, first_use)


def _other_calls(calendar: BusinessCalendar, batch: Starts) -> tuple[float, float]:
    """Seconds per call of `business_minutes_between` and `is_open` on the same starts."""
    add = calendar.add_business_minutes
    between = calendar.business_minutes_between
    is_open = calendar.is_open
    ends = [add(s, m) for s, m in batch]

    def measure_between() -> None:
        for (start, _), end in zip(batch, ends, strict=True):
            between(start, end)

    def measure_open() -> None:
        for start, _ in batch:
            is_open(start)

    return timed(measure_between) / len(batch), timed(measure_open) / len(batch)


def _print(times: dict[str, float], total: int, first_use: float) -> None:
    budget = BUDGET_S_PER_MILLION * total / 1_000_000
    mine, base = times["deadline"], times["baseline"]
    header = f"{'figure':<40}{'total':>10}{'per call':>12}  {'target':<14}verdict"
    print(header)
    print("-" * len(header))
    print(
        f"{'add_business_minutes':<40}{mine:>8.2f} s{mine / total * 1e6:>9.2f} µs  "
        f"{f'< {budget:g} s':<14}{verdict(mine < budget)}"
    )
    print(
        f"{'baseline: start + timedelta(minutes=m)':<40}{base:>8.2f} s{base / total * 1e6:>9.2f} µs"
    )
    print(f"{'ratio to the baseline':<40}{mine / base:>9.1f}x")
    print(f"{'first use (builds the year table)':<40}{first_use * 1000:>7.1f} ms")
    print(f"{'business_minutes_between (info)':<40}{'':>10}{times['between'] * 1e6:>9.2f} µs")
    print(f"{'is_open (info)':<40}{'':>10}{times['is_open'] * 1e6:>9.2f} µs")


if __name__ == "__main__":  # python -m benchmarks.calendar [--quick]
    import sys

    run(quick="--quick" in sys.argv[1:])
