"""Real clients' messages (shared/corpus/real-mail) sent over SMTP by a registered provider:
each ends in exactly one outcome and the server keeps serving."""

from __future__ import annotations

from mailflow.app import App
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES, three_photos
from tests.support.corpus import as_provider, corpus_messages
from tests.support.db import accepted_id, wait_final
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink


def test_every_real_message_ends_in_one_outcome(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    messages = corpus_messages()
    assert len(messages) >= 30
    outcomes: dict[str, tuple[str, str]] = {}
    for path in messages:
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
