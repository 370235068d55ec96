"""Issue #11: an out-of-office notice without Auto-Submitted never lands in a case."""

from __future__ import annotations

import pytest

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from tests.conftest import RunningService
from tests.support.cli import cli_json
from tests.support.db import outbox, wait_final
from tests.support.mail import case_email
from tests.support.review import open_case, send
from tests.support.sink import RelaySink


@pytest.mark.parametrize(
    "prefix, body",
    [
        ("Abwesenheitsnotiz: ", "Ich bin bis zum 9. November nicht im Büro."),
        ("Réponse automatique : ", "Je suis absente jusqu'au 9 novembre."),
    ],
    ids=["de", "fr"],
)
def test_an_out_of_office_reply_to_a_case_adds_nothing_and_sends_nothing(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], prefix: str, body: str,
) -> None:
    number, ack, _notification = open_case(service, sink, provider, dermatologists[0])
    sent_before = len(outbox(app))
    address = ack.message["Reply-To"].addresses[0].addr_spec
    # what the provider's mail server sends back on its own: no Auto-Submitted, no Precedence
    notice = case_email(provider, address, body, subject=f"{prefix}{ack.message['Subject']}",
                        headers={"In-Reply-To": ack.message["Message-ID"]})
    assert "Auto-Submitted" not in notice and "Precedence" not in notice

    row = wait_final(app, send(service, provider, notice, address))
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "automatic"
    assert "its subject starts with" in row.outcome
    shown = cli_json(config, "cases", "show", number)
    assert [n for n in shown["notes"] if n["kind"] == "comment"] == []
    assert shown["state"] == "assigned"
    assert len(outbox(app)) == sent_before  # no forward to the dermatologist, no answer
