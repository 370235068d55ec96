"""What the intake benchmark sends, as whom, how many times, and the targets it is judged by."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
PG_URL = os.environ.get("MAILFLOW_TEST_POSTGRES_URL", "")

PROVIDER = "dr.bench@clinic.test"
PASSWORD = "correct horse battery"
CASES = "cases@derm.localhost"
PHOTO_SIZE = (4000, 3000)  # 12 megapixels
CASE_PHOTOS = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
EXTRA_PHOTOS = ("distribution_2.jpg", "closeup_2.jpg", "oblique_2.jpg")
TOKEN = b"BENCH-0000000000"  # replaced per message by a unique token of the same width
BIG_TARGET = 25_000_000

DATA_RATIO_TARGET = 1.3
ACK_P95_TARGET_MS = 2000.0
RSS_TARGET_MB = 300.0


@dataclass(frozen=True)
class Plan:
    sequential: int  # messages sent one after another, back to back
    per_client: int  # messages per client in the two-client pass
    paced: int  # messages sent one at a time, each after the previous ack (idle latency)
    door: int  # messages per client to `mailflow smtpd` alone (the door without the worker)
    clients: int = 2


FULL = Plan(sequential=20, per_client=10, paced=5, door=6)
QUICK = Plan(sequential=4, per_client=2, paced=0, door=2)
