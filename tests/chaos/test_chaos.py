"""`make test`'s chaos: 60 cases over SMTP to two nodes on PostgreSQL while a worker, a
scheduler, an smtpd and the bus are killed with SIGKILL and restarted; the same promises as
`make chaos`'s 500 (tests/chaos/run.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.run import run
from tests.conftest import MigratedTemplates
from tests.support.nodes import needs_postgres

# its own group: beside the two-node tests on the other xdist worker, not between them
pytestmark = [needs_postgres, pytest.mark.xdist_group("chaos")]


def test_sixty_cases_through_kills_keep_every_promise(
    tmp_path: Path, migrated_templates: MigratedTemplates, capsys: pytest.CaptureFixture[str],
) -> None:
    seed = int(os.environ.get("MAILFLOW_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    result = run(60, 4, seed, tmp_path, (0.5, 2.0), migrated_templates, log=False)
    with capsys.disabled():
        print("\n" + result.table())
    assert sum(result.kills.values()) >= 4 and set(result.kills) == {
        "worker", "scheduler", "smtpd", "bus"}
    assert result.problems == [], f"seed {seed} (MAILFLOW_CHAOS_SEED={seed} to repeat)"
