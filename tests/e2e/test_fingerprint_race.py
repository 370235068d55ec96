"""DESIGN §3: the same message twice makes one case, also when two workers process the two
copies at the same moment (a client's retry after a lost 250, or one message delivered by two
routes, taken by two workers of two processes)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import InboundMessage, MessageStatus, OutboundMessage, utcnow
from mailflow.parse.analyze import Analysis
from mailflow.spool import Arrival, spool
from mailflow.workflow.pool import analyze_stored
from mailflow.workflow.worker import InboundRunner, MessageClaim, drain
from tests.support.cases import CASES, three_photos
from tests.support.db import case_count
from tests.support.mail import FULL_FORM, case_email


class Rendezvous:
    """Where a worker's analysis runs: the real `analyze_stored`, in the worker's own thread,
    and then a wait until every worker has its analysis. So the workers route (look the
    fingerprint up, open the case, queue the acknowledgement) at the same moment."""

    def __init__(self, workers: int) -> None:
        self.barrier = threading.Barrier(workers, timeout=120)

    def analyze(self, *args: Any) -> Analysis:
        analysis = analyze_stored(*args)
        self.barrier.wait()
        return analysis


def statuses(app: App) -> list[str]:
    with app.sessions() as session:
        return sorted(session.execute(select(InboundMessage.status)).scalars())


def acknowledgements(app: App) -> int:
    with app.sessions() as session:
        rows = session.execute(select(OutboundMessage).where(OutboundMessage.kind == "ack"))
        return len(rows.scalars().all())


def race(app: App, claims: list[MessageClaim]) -> None:
    """Each claim processed by its own worker thread, all at once."""
    meeting = Rendezvous(len(claims))
    errors: list[BaseException] = []

    def worker(claim: MessageClaim) -> None:
        try:
            InboundRunner(app, meeting, claim.instance).process(claim)  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_two_workers_racing_one_fingerprint_make_one_case(app: App, provider: str) -> None:
    raw = case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes()
    for _copy in range(2):
        spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,),
                           auth_user=provider, tls=True))
    claims = [InboundRunner(app, None, name).claim() for name in ("worker-a", "worker-b")]
    assert all(c is not None for c in claims) and claims[0] != claims[1]
    race(app, claims)  # type: ignore[arg-type]
    # the loser of a conflict is given back with a back-off; the next pass settles it
    later = utcnow() + timedelta(seconds=max(app.config.intake.retry_backoff_seconds or [0]) + 1)
    with time_machine.travel(later):
        drain(app)
    assert statuses(app) == sorted([MessageStatus.PROCESSED, MessageStatus.DUPLICATE])
    assert case_count(app) == 1
    assert acknowledgements(app) == 1
