"""Issue #11: a sender cannot write its own DKIM pass into the trusted relay's results.

The service is configured as behind a trusted relay (no SMTP AUTH); each message arrives
through the real SMTP door with the Authentication-Results header that relay would have added
on top, exactly as the relay writes it: the sender's MAIL FROM copied into smtp.mailfrom.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.app import App
from mailflow.db.models import InboundMessage, MessageStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import RunningService, make_config
from tests.support.cases import CASES, three_photos
from tests.support.db import accepted_id, case_count, outbox, wait_final
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink

AUTHSERV = "mx.derm.test"
PROVIDER = "dr.family@clinic.test"
RECEIVED = "Received: from mail.evil.test by mx.derm.test; Mon, 2 Nov 2026 10:00 -0500\r\n"


@pytest.fixture
def relayed(request: pytest.FixtureRequest, tmp_path: Path, db_url: str, sink: RelaySink,
            process_pool) -> Iterator[RunningService]:  # type: ignore[no-untyped-def]
    """The relay at 127.0.0.1; parametrized True, it is also the MTA whose XFORWARD the door
    believes ([smtp] xforward_hosts)."""
    from mailflow.app import initialise

    xforward = ["127.0.0.1"] if getattr(request, "param", False) else []
    config = make_config(tmp_path, db_url, smtp={"require_auth": False,
                                                 "xforward_hosts": xforward},
                         trust={"trusted_relays": ["127.0.0.1"], "authserv_id": AUTHSERV},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email=PROVIDER, name="Dr Pat Family", role="provider", approved=True)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        yield running
    finally:
        running.stop()
        app.close()


def through_relay(service: RunningService, results: str, mail_from: str,
                  xforward: str | None = None) -> InboundMessage:
    """A case as the relay hands it on: its Authentication-Results on top, no SMTP AUTH."""
    msg = case_email(PROVIDER, CASES, FULL_FORM, three_photos())
    raw = f"Authentication-Results: {results}\r\n{RECEIVED}".encode() + msg.as_bytes()
    code, text = submit(service.port, None, None, raw, mail_from, [CASES], xforward)
    assert code == 250, text
    return wait_final(service.app, accepted_id(text))


@pytest.mark.parametrize(
    "mail_from, results",
    [
        # issue #11 as reported: the DKIM words inside the quoted local part of smtp.mailfrom
        ('"dkim=pass header.d=clinic.test x"@evil.test',
         f'{AUTHSERV}; spf=pass smtp.mailfrom="dkim=pass header.d=clinic.test x"@evil.test; '
         "dmarc=fail header.from=clinic.test"),
        # the same words as an RFC 2047 encoded word, which a decoder turns into a new result
        ('"=?us-ascii?q?x=22=3B_dkim=3Dpass_header.d=3Dclinic.test_header.x=3D=22?="@evil.test',
         f'{AUTHSERV}; spf=pass smtp.mailfrom="=?us-ascii?q?x=22=3B_dkim=3Dpass_header.d=3D'
         'clinic.test_header.x=3D=22?="@evil.test; dmarc=fail header.from=clinic.test'),
    ],
    ids=["quoted-mailfrom", "encoded-word-mailfrom"],
)
def test_a_forged_pass_in_the_senders_own_words_opens_no_case(
    relayed: RunningService, mail_from: str, results: str
) -> None:
    row = through_relay(relayed, results, mail_from)
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "unverified"
    assert row.outcome == ("the sender could not be verified: mx.derm.test did not report "
                           "DKIM or DMARC pass for clinic.test")
    assert case_count(relayed.app) == 0
    assert outbox(relayed.app) == []  # nothing is sent to a sender nobody can vouch for


def test_the_relays_real_pass_still_opens_the_case(
    relayed: RunningService, sink: RelaySink
) -> None:
    results = (f"{AUTHSERV}; spf=pass (sender SPF authorized) smtp.mailfrom=clinic.test; "
               "dkim=pass (2048-bit key) header.d=clinic.test header.s=sel1; "
               "dmarc=pass (p=reject) header.from=clinic.test")
    row = through_relay(relayed, results, PROVIDER)
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert case_count(relayed.app) == 1
    assert sink.wait_for(PROVIDER)  # the acknowledgement


@pytest.mark.parametrize("relayed", [True], indirect=True, ids=["xforward"])
def test_a_relay_that_also_says_xforward_is_still_believed(
    relayed: RunningService, sink: RelaySink
) -> None:
    """Postfix with a DMARC milter, in both [trust] trusted_relays and [smtp] xforward_hosts:
    its own results count, though it names the client it had (whose headers are below)."""
    results = (f"{AUTHSERV}; dkim=pass header.d=clinic.test header.s=sel1; "
               "dmarc=pass (p=reject) header.from=clinic.test")
    row = through_relay(relayed, results, PROVIDER, "ADDR=192.0.2.7 HELO=mail.evil.test")
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case", row.outcome
    assert row.peer == "127.0.0.1"  # the relay whose results were believed
    assert sink.wait_for(PROVIDER)  # the acknowledgement
