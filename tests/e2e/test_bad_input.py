"""Every bad input of issue #2 gets a clear outcome; nothing is lost; the server keeps serving."""

from __future__ import annotations

import struct
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailflow.app import App
from mailflow.db.models import MessageStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.cli import cli_json
from tests.support.db import accepted_id, case_count, outbox, wait_final
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink

HELP = "help@derm.localhost"


def send(service: RunningService, provider: str, msg: EmailMessage | bytes, **kw: object) -> int:
    code, text = submit(service.port, provider, PASSWORD, msg, **kw)  # type: ignore[arg-type]
    assert code == 250, text
    return accepted_id(text)


def nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        b = f"b{level}".encode()
        body = (
            b"Content-Type: multipart/mixed; boundary="
            + b
            + b"\r\n\r\n--"
            + b
            + b"\r\n"
            + body
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    return body


def raw_message(provider: str, to: str, mime: bytes, subject: str = "case") -> bytes:
    return (
        f"From: {provider}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash(mime))}@clinic.test>\r\nMIME-Version: 1.0\r\n"
    ).encode() + mime


def png_bomb() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_oversized_message_is_refused_with_552(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    from mailflow.app import initialise
    from tests.conftest import RunningService as Svc

    config = make_config(
        tmp_path,
        db_url,
        smtp={"max_message_bytes": 200_000},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port},
    )
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(
            s,
            email="big@clinic.test",
            name="Dr Big",
            role="provider",
            password=PASSWORD,
            approved=True,
        )
    running = Svc(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        msg = case_email("big@clinic.test", CASES, FULL_FORM, three_photos())
        code, text = submit(running.port, "big@clinic.test", PASSWORD, msg)
        assert code == 552 and b"5.3.4" in text
        # the server keeps serving: a small message right after is accepted
        code, _ = submit(
            running.port, "big@clinic.test", PASSWORD, case_email("big@clinic.test", HELP, "help")
        )
        assert code == 250
    finally:
        running.stop()
        app.close()


@pytest.mark.parametrize(
    "mime, words",
    [
        (nested(20), "nest"),
        (None, "mime parts"),
    ],
)
def test_unreadable_structure_is_explained_to_the_sender(
    service: RunningService,
    app: App,
    sink: RelaySink,
    provider: str,
    mime: bytes | None,
    words: str,
) -> None:
    if mime is None:  # 500 attachments
        msg = case_email(provider, CASES, FULL_FORM)
        for i in range(500):
            msg.add_attachment(
                b"x", maintype="application", subtype="octet-stream", filename=f"f{i}.bin"
            )
        raw = msg.as_bytes()
    else:
        raw = raw_message(provider, CASES, mime)
    row = wait_final(app, send(service, provider, raw, mail_from=provider, rcpt=[CASES]))
    assert row.status == MessageStatus.PROCESSED and row.route == "unreadable"
    reply = sink.wait_for(provider)[0]
    assert "could not be accepted" in str(reply.message["Subject"])
    assert words in reply.text.lower()
    assert case_count(app) == 0


def test_files_that_are_not_photos_are_refused_by_name(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    good = skin_photo(seed=5)
    msg = case_email(provider, CASES, FULL_FORM, [("distribution.jpg", good)])
    msg.add_attachment(
        b"<html><body>not a photo</body></html>",
        maintype="image",
        subtype="jpeg",
        filename="closeup.jpg",
    )
    msg.add_attachment(
        b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n",
        maintype="image",
        subtype="jpeg",
        filename="oblique.jpg",
    )
    msg.add_attachment(png_bomb(), maintype="image", subtype="png", filename="bomb.png")
    msg.add_attachment(
        good[: len(good) // 2], maintype="image", subtype="jpeg", filename="truncated.jpg"
    )
    msg.add_attachment(
        skin_photo(seed=6), maintype="image", subtype="jpeg", filename="../../etc/passwd.jpg"
    )
    row = wait_final(app, send(service, provider, msg))
    assert row.status == MessageStatus.PROCESSED
    ack = sink.wait_for(provider)[0]
    text = ack.text
    refused = text.split("NOT ACCEPTED", 1)[1]
    for name in ("closeup.jpg", "oblique.jpg", "bomb.png", "truncated.jpg"):
        assert name in refused, name
    assert "passwd.jpg" in text and "../" not in text
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    shown = cli_json(app.config, "cases", "show", number)
    assert [img["filename"] for img in shown["images"]] == ["distribution.jpg", "passwd.jpg"]
    assert shown["state"] == "incomplete"  # only two real photos


def test_header_injection_in_subject_and_form_goes_nowhere(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    raw = raw_message(
        provider,
        CASES,
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + FULL_FORM.replace("Jane Testpatient", "Jane\rBcc: evil@attacker.test").encode(),
        subject="=?utf-8?q?hello=0D=0ABcc=3A_evil=40attacker=2Etest?=",
    )
    row = wait_final(app, send(service, provider, raw, mail_from=provider, rcpt=[CASES]))
    assert row.status == MessageStatus.PROCESSED
    ack = sink.wait_for(provider)[0]
    assert ack.message["Bcc"] is None
    assert all("attacker" not in r for m in sink.messages for r in m.rcpt_tos)


def test_unknown_charset_still_makes_a_case(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    raw = raw_message(
        provider,
        CASES,
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n" + FULL_FORM.encode(),
    )
    row = wait_final(app, send(service, provider, raw, mail_from=provider, rcpt=[CASES]))
    assert row.status == MessageStatus.PROCESSED and row.route == "new-case"
    assert "Jane Testpatient" in sink.wait_for(provider)[0].text


@pytest.mark.parametrize("to", [CASES, HELP])
def test_empty_message_or_help_gets_the_instructions(
    service: RunningService, app: App, sink: RelaySink, provider: str, to: str
) -> None:
    msg = case_email(provider, to, "" if to == CASES else "How do I send a case?")
    row = wait_final(app, send(service, provider, msg))
    assert row.route == "help"
    reply = sink.wait_for(provider)[0]
    assert "Patient name (required):" in reply.text and "not for emergencies" in reply.text.lower()
    assert case_count(app) == 0


def test_forged_and_foreign_case_addresses_are_quarantined(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    send(service, provider, case_email(provider, CASES, FULL_FORM, three_photos()[:2]))
    ack = sink.wait_for(provider)[0]
    real = ack.message["Reply-To"].addresses[0].addr_spec
    forged = real[: -len("@derm.localhost") - 3] + "aaa@derm.localhost"
    row = wait_final(
        app, send(service, provider, case_email(provider, forged, "Patient name: X"), rcpt=[forged])
    )
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "forged-address"

    with transaction(app.sessions) as s:
        accounts.add(
            s,
            email="other@clinic.test",
            name="Dr Other",
            role="provider",
            password=PASSWORD,
            approved=True,
        )
    stolen = case_email("other@clinic.test", real, "Adding to someone else's case")
    code, text = submit(service.port, "other@clinic.test", PASSWORD, stolen, rcpt=[real])
    row = wait_final(app, accepted_id(text))
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "wrong-participant"

    listed = cli_json(app.config, "messages", "list", "--status", "quarantined")
    assert {m["reason_code"] for m in listed} == {"forged-address", "wrong-participant"}
    assert all(m["outcome"] for m in listed)
    # a signed-in sender is told their message was held, and nothing of the case
    told = sink.wait_for("other@clinic.test")
    assert len(told) == 1 and "given to someone else" in told[0].text
    assert "DERM-" not in told[0].text + str(told[0].message["Subject"])
    assert "Testpatient" not in told[0].text


def test_unregistered_and_unapproved_senders_are_quarantined_without_reply(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    from mailflow.app import initialise

    # An MX-style listener (no AUTH required): anyone can hand us mail.
    config = make_config(
        tmp_path,
        db_url,
        smtp={"require_auth": False},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port},
    )
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email="pending@clinic.test", name="Dr Pending", role="provider")
        accounts.add(s, email="ok@clinic.test", name="Dr Ok", role="provider", approved=True)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        ids = {}
        for who in ("stranger@elsewhere.test", "pending@clinic.test", "ok@clinic.test"):
            code, text = submit(
                running.port, None, None, case_email(who, CASES, FULL_FORM, three_photos())
            )
            assert code == 250
            ids[who] = accepted_id(text)
        codes = {who: wait_final(app, i).reason_code for who, i in ids.items()}
        assert codes == {
            "stranger@elsewhere.test": "unregistered",
            "pending@clinic.test": "not-approved",
            "ok@clinic.test": "unverified",
        }  # no AUTH, no trusted relay
        assert outbox(app) == [] and case_count(app) == 0
    finally:
        running.stop()
        app.close()


def test_unauthenticated_mail_on_the_submission_port_is_530(
    service: RunningService, provider: str
) -> None:
    code, text = submit(service.port, None, None, case_email(provider, CASES))
    assert code == 530 and b"5.7.0" in text


def test_unknown_recipient_is_550_and_sending_as_someone_else_is_refused(
    service: RunningService, provider: str
) -> None:
    code, text = submit(
        service.port, provider, PASSWORD, case_email(provider, "nobody@derm.localhost")
    )
    assert code == 550 and b"5.1.1" in text
    code, text = submit(
        service.port,
        provider,
        PASSWORD,
        case_email("someone.else@clinic.test", CASES),
        mail_from=provider,
    )
    assert code == 550 and b"From" in text
    code, text = submit(
        service.port,
        provider,
        PASSWORD,
        case_email(provider, CASES),
        mail_from="someone.else@clinic.test",
    )
    assert code == 553


def test_a_sender_over_the_rate_limit_is_told_to_retry_later(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    from mailflow.app import initialise

    config = make_config(tmp_path, db_url, smtp={"rate_per_minute": 2},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email="fast@clinic.test", name="Dr Fast", role="provider",
                     password=PASSWORD, approved=True)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        replies = [submit(running.port, "fast@clinic.test", PASSWORD,
                          case_email("fast@clinic.test", HELP, f"question {i}"))[0]
                   for i in range(3)]
        assert replies == [250, 250, 451]  # temporary: the client retries later, nothing lost
    finally:
        running.stop()
        app.close()


def test_trusted_relay_results_count_only_from_the_top_of_the_header(
    tmp_path: Path, db_url: str, sink: RelaySink, process_pool
) -> None:
    from mailflow.app import initialise

    config = make_config(tmp_path, db_url, smtp={"require_auth": False},
                         trust={"trusted_relays": ["127.0.0.1"], "authserv_id": "mx.derm.test"},
                         outbound={"relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as s:
        accounts.add(s, email="doc@hospital.org", name="Dr Hospital", role="provider",
                     approved=True)
    running = RunningService(app, process_pool, ("smtp", "worker", "outbox")).start()
    relay_says = "Authentication-Results: mx.derm.test; dkim={dkim} header.d=hospital.org\r\n"
    received = "Received: from mail.hospital.org by mx.derm.test; Mon, 2 Nov 2026 10:00 -0500\r\n"
    try:
        forged = (relay_says.format(dkim="none") + received
                  + relay_says.format(dkim="pass")  # planted by the sender, below Received
                  ).encode() + case_email("doc@hospital.org", CASES, FULL_FORM,
                                          three_photos()).as_bytes()
        genuine = (relay_says.format(dkim="pass") + received).encode() + case_email(
            "doc@hospital.org", CASES, FULL_FORM.replace("3 months", "4 months"),
            three_photos()).as_bytes()
        rows = []
        for raw in (forged, genuine):
            code, text = submit(running.port, None, None, raw, "doc@hospital.org", [CASES])
            rows.append(wait_final(app, accepted_id(text)))
        assert rows[0].status == MessageStatus.QUARANTINED and rows[0].reason_code == "unverified"
        assert rows[1].status == MessageStatus.PROCESSED and rows[1].route == "new-case"
        assert case_count(app) == 1
    finally:
        running.stop()
        app.close()


def test_a_new_patient_by_reply_all_to_an_old_case_plus_cases_is_held_not_guessed(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    send(service, provider, case_email(provider, CASES, FULL_FORM, three_photos()))
    ack = sink.wait_for(provider)[0]
    old_case = ack.message["Reply-To"].addresses[0].addr_spec
    msg = case_email(provider, f"{old_case}, {CASES}",
                     FULL_FORM.replace("Jane Testpatient", "John Otherpatient"), three_photos())
    row = wait_final(app, send(service, provider, msg, rcpt=[old_case, CASES]))
    assert row.status == MessageStatus.QUARANTINED
    assert row.reason_code == "another-patient" and CASES in row.outcome
    assert case_count(app) == 1


def test_an_unreadable_automatic_message_is_not_answered(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    raw = (b"Auto-Submitted: auto-generated\r\n"
           + raw_message(provider, CASES, nested(20), subject="Delivery report"))
    row = wait_final(app, send(service, provider, raw, mail_from=provider, rcpt=[CASES]))
    assert row.status == MessageStatus.QUARANTINED and row.reason_code == "automatic"
    assert outbox(app) == []


def test_a_processed_message_cannot_be_reprocessed_into_a_second_case(
    service: RunningService, app: App, sink: RelaySink, provider: str
) -> None:
    from tests.support.cli import run_cli

    row = wait_final(app, send(service, provider,
                               case_email(provider, CASES, FULL_FORM, three_photos())))
    result = run_cli(app.config, "messages", "reprocess", str(row.id), check=False)
    assert result.returncode == 1 and "twice" in result.stderr
    assert case_count(app) == 1
