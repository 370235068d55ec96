"""How much each fuzz test runs: a short, derandomized run in `make test`, a long, random one
in `make fuzz` (MAILFLOW_FUZZ=long). Bounded by example counts, never by wall-clock time."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("MAILFLOW_FUZZ") == "long"
# The long run multiplies every short count by this (`make fuzz FUZZ_SCALE=...` changes it).
SCALE = int(os.environ.get("MAILFLOW_FUZZ_SCALE", "40"))


def budget(short: int) -> settings:
    """`short` examples in the ordinary test run; SCALE times as many, randomized, in the long."""
    return settings(
        max_examples=short * SCALE if LONG else short,
        derandomize=not LONG,  # the same examples on every machine: a red test is reproducible
        deadline=None,  # a loaded shared machine is no finding
        database=None,  # nothing written next to the code
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
        print_blob=True,  # a failure prints the line that replays it
    )
