"""The worker works on as many messages at once as it has analysis processes ([intake]
workers): a message whose analysis is slow does not hold up the ones after it.

Made slow for real: the S/MIME check of a signed message runs `openssl cms` (MAILFLOW_OPENSSL
names the command), here a script that waits for the test to open a gate before it becomes
openssl. A plain case sent after the signed one gets its acknowledgement while the signed one
is still being checked; with one loop feeding the pool it waited behind it."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.db import accepted_id, message, wait_final
from tests.support.mail import case_email, submit
from tests.support.sink import RelaySink
from tests.support.smime import Pki, entity, outer

OTHER = "np.second@clinic.test"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An `openssl` that waits until the gate file exists; opened at the end in any case, so
    the analysis process it holds can stop."""
    opened = tmp_path / "gate-open"
    script = tmp_path / "openssl-behind-a-gate"
    script.write_text(f'#!/bin/sh\nwhile [ ! -e "{opened}" ]; do sleep 0.02; done\n'
                      'exec openssl "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("MAILFLOW_OPENSSL", str(script))  # read by the pool's new processes
    yield opened
    opened.touch()


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink, pki: Pki) -> Config:
    cfg = make_config(
        tmp_path, db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port},
        smtp={"rate_per_minute": 1000},
        intake={"poll_seconds": 0.2, "workers": 2},
        smime=pki.smime_config("aes-256-cbc"),
    )
    initialise(cfg)
    return cfg


@pytest.fixture
def own_service(app: App, gate: Path) -> Iterator[RunningService]:
    pool = AnalysisPool(2)  # its processes start after the gate is set, so they use it
    running = RunningService(app, pool, ("smtp", "worker", "reports", "outbox")).start()
    try:
        yield running
    finally:
        gate.touch()
        running.stop()
        pool.shutdown()


def test_a_slow_message_does_not_hold_up_the_next(
    own_service: RunningService, app: App, sink: RelaySink, provider: str, pki: Pki,
    gate: Path,
) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email=OTHER, name="NP Second", role="provider", password=PASSWORD,
                     approved=True, license_state="NY")
    cert, key = pki.issue("provider", provider)
    signed = outer(pki.sign(entity(case_email(provider, CASES, photos=three_photos())), cert,
                            key), provider)
    code, text = submit(own_service.port, provider, PASSWORD, signed, mail_from=provider,
                        rcpt=[CASES])
    assert code == 250, text
    slow = accepted_id(text)

    code, text = submit(own_service.port, OTHER, PASSWORD,
                        case_email(OTHER, CASES, photos=three_photos()), mail_from=OTHER,
                        rcpt=[CASES])
    assert code == 250, text
    quick = wait_final(app, accepted_id(text))
    assert quick.status == MessageStatus.PROCESSED, quick.outcome
    assert sink.wait_for(OTHER), "the second case's acknowledgement"
    assert message(app, slow).status == MessageStatus.PROCESSING  # still at its check
    assert not sink.to(provider)

    gate.touch()
    done = wait_final(app, slow)
    assert done.status == MessageStatus.PROCESSED, done.outcome
    assert done.smime.startswith(f"S/MIME signed by {provider}")
    assert sink.wait_for(provider)
