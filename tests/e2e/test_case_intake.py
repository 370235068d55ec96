"""A provider emails a case over SMTP and receives the acknowledgement (issue #2, done-when)."""

from __future__ import annotations

import re

from mailflow.config import Config
from tests.conftest import PASSWORD, RunningService
from tests.support.cli import cli_json
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink

CASES = "cases@derm.localhost"
CASE_NUMBER = re.compile(r"DERM-\d{4}-\d{6}")


def three_photos() -> list[tuple[str, bytes]]:
    return [
        ("distribution.jpg", skin_photo(seed=1)),
        ("closeup_front.jpg", skin_photo(seed=2)),
        ("oblique_side.jpg", skin_photo(seed=3)),
    ]


def test_complete_case_is_acknowledged_with_number_and_views(
    service: RunningService, sink: RelaySink, provider: str, config: Config
) -> None:
    code, text = submit(
        service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos())
    )
    assert code == 250, text

    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    assert "more needed" not in str(ack.message["Subject"])
    body = ack.text
    assert number in body
    assert "distribution" in body
    assert "close-up" in body and "oblique" in body
    assert "STILL NEEDED" not in body
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["Reply-To"].addresses[0].addr_spec.startswith(f"case+{number.lower()}.")

    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "submitted"
    assert shown["fields"]["patient_name"] == "Jane Testpatient"
    assert shown["fields"]["location"].startswith("anterior lower legs")
    assert [img["view"] for img in shown["images"]][0] == "distribution"
    assert len(shown["images"]) == 3
    assert shown["missing"] == []


def test_two_photos_make_an_incomplete_case_that_the_reply_completes(
    service: RunningService, sink: RelaySink, provider: str, config: Config
) -> None:
    photos = three_photos()
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, photos[:2]))
    ack = sink.wait_for(provider)[0]
    assert "more needed" in str(ack.message["Subject"])
    assert "STILL NEEDED" in ack.text
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    assert cli_json(config, "cases", "show", number)["state"] == "incomplete"

    reply = case_email(
        provider,
        str(ack.message["Reply-To"]),
        "Here is the third photo.",
        photos[2:],
        subject=f"Re: {ack.message['Subject']}",
        headers={"In-Reply-To": ack.message["Message-ID"], "References": ack.message["Message-ID"]},
    )
    code, _ = submit(
        service.port,
        provider,
        PASSWORD,
        reply,
        rcpt=[ack.message["Reply-To"].addresses[0].addr_spec],
    )
    assert code == 250
    second = sink.wait_for(provider, count=2)[1]
    assert "now complete" in second.text
    shown = cli_json(config, "cases", "show", number)
    assert shown["state"] == "submitted"
    assert len(shown["images"]) == 3


def test_no_patient_name_at_rest_or_in_the_logs(
    service: RunningService, sink: RelaySink, provider: str, config: Config, caplog
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos()))
    sink.wait_for(provider)
    needle = b"Testpatient"
    storage = config.storage_dir
    leaks = [
        p
        for p in storage.rglob("*")
        if p.is_file() and "outgoing" not in p.parts and needle in p.read_bytes()
    ]
    assert leaks == []  # blobs, keys and (on SQLite) the database file and its WAL
    if config.database_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(config.database_url)
        with engine.connect() as conn:
            dump = " ".join(
                str(r)
                for t in ("patients", "cases", "case_images", "case_notes")
                for r in conn.execute(text(f"select * from {t}"))
            )
        engine.dispose()
        assert "Testpatient" not in dump
    assert "Testpatient" not in caplog.text
