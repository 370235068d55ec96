"""Real clients' messages (shared/corpus/real-mail) sent over SMTP by a registered provider:
each ends in exactly one outcome and the server keeps serving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailflow.app import App
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD, ROOT, RunningService
from tests.e2e.test_case_intake import CASES, three_photos
from tests.support.db import accepted_id, wait_final
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink

CORPUS = ROOT.parent / "shared" / "corpus" / "real-mail"
MESSAGES = sorted(CORPUS.glob("*.eml")) if CORPUS.is_dir() else []
FROM_LINE = re.compile(rb"^From:.*(\r?\n[ \t].*)*$", re.IGNORECASE | re.MULTILINE)


def as_provider(raw: bytes, provider: str) -> bytes:
    """The message as the provider's client would send it: From: is their own address."""
    head_end = raw.find(b"\n\n") if b"\r\n\r\n" not in raw else raw.find(b"\r\n\r\n")
    head, body = raw[:head_end], raw[head_end:]
    new_from = f"From: {provider}".encode()
    head, count = FROM_LINE.subn(lambda _m: new_from, head, count=1)
    if not count:
        head = new_from + b"\r\n" + head
    return head + body


@pytest.mark.skipif(not MESSAGES, reason=f"the shared corpus is not at {CORPUS}")
def test_every_real_message_ends_in_one_outcome(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    assert len(MESSAGES) >= 30
    outcomes: dict[str, tuple[str, str]] = {}
    for path in MESSAGES:
        raw = as_provider(path.read_bytes(), provider)
        code, text = submit(service.port, provider, PASSWORD, raw, provider, [CASES])
        assert code == 250, f"{path.name}: {code} {text!r}"
        row = wait_final(app, accepted_id(text))
        outcomes[path.name] = (row.status, row.route)
        assert row.outcome, f"{path.name} has no outcome text"
        if row.status == MessageStatus.QUARANTINED:
            assert row.reason_code, f"{path.name} quarantined without a reason"
    bounces = [n for n in outcomes if "undelivered" in n or "report_422" in n]
    assert all(outcomes[n] == (MessageStatus.QUARANTINED, "automatic") for n in bounces)
    # and the server still serves: a normal case right after the whole corpus
    code, text = submit(service.port, provider, PASSWORD,
                        case_email(provider, CASES, FULL_FORM, three_photos()))
    row = wait_final(app, accepted_id(text))
    assert (row.status, row.route) == (MessageStatus.PROCESSED, "new-case")


def test_the_corpus_is_where_the_suite_expects_it() -> None:
    # CI lays shared/ beside the clone; if it is missing the corpus test above would only skip.
    assert Path(CORPUS).is_dir(), f"missing {CORPUS}"
