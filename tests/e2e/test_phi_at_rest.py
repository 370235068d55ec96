"""DESIGN §3: no PHI at rest in clear, none in the logs above DEBUG, along the whole review
path: the case, the dermatologist's answer and its PDF report, a conversation after it (case
notes) and an addendum (a second PDF). The synthetic patient's name is put into every one of
them, and then looked for in every database row, every file under the storage folder (PDFs
read as text, since their words are compressed) and every log record at INFO and above.
(The outgoing maildir is plaintext by design and is not used here: mail goes to a relay.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Consult
from tests.conftest import RunningService
from tests.support.cli import cli_json
from tests.support.db import wait_final
from tests.support.mail import reply_to
from tests.support.review import ANSWER, answer, open_case, pdf_of, pdf_text, send
from tests.support.sink import RelaySink

NAME = "Jane Testpatient"  # FULL_FORM's patient
NEEDLE = "Testpatient"


def readable(path: Path) -> str:
    """A file's bytes as text, and for a PDF also the words a reader sees."""
    data = path.read_bytes()
    words = pdf_text(data) if data.startswith(b"%PDF") else ""
    return data.decode("latin-1") + words


def files_holding(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in readable(p)]


def database_files(config: Config) -> list[Path]:
    """SQLite's file, its WAL and shared memory (outside the storage folder in these tests)."""
    url = config.database_url
    if not url.startswith("sqlite:///"):
        return []
    path = Path(url.removeprefix("sqlite:///"))
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


def as_text(value: object) -> str:
    if isinstance(value, memoryview):  # PostgreSQL's bytea
        value = bytes(value)
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def rows_holding(app: App, needle: str) -> list[str]:
    """Every table's rows, as the database hands them to anyone who reads it (no decryption)."""
    found = []
    with app.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                shown = " ".join(as_text(value) for value in row)
                if needle in shown:
                    found.append(f"{table}: {shown[:200]}")
    return found


def test_the_name_is_nowhere_in_clear_after_answer_conversation_and_addendum(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    derm = dermatologists[0]
    number, _ack, notification = open_case(service, sink, provider, derm)
    assert NAME in notification.text  # the dermatologist's email carries it (PHI in email on)
    plan = f"Plan: {NAME} to apply triamcinolone 0.1% ointment twice daily for 2 weeks"
    answer(service, app, derm, notification, ANSWER.replace(ANSWER.splitlines()[2], plan))
    report = sink.wait_for(provider, count=2)[1]
    assert NAME in pdf_text(pdf_of(report))

    msg, address = reply_to(report, provider, f"{NAME} asks whether she may swim.")
    wait_final(app, send(service, provider, msg, address))
    question = sink.wait_for(derm, count=2)[1]
    msg, address = reply_to(question, derm, f"Yes, {NAME} may swim; emollient afterwards.")
    wait_final(app, send(service, derm, msg, address))
    advice = sink.wait_for(provider, count=3)[2]
    addendum = ANSWER.replace("Nummular eczema", f"Allergic contact dermatitis ({NAME})")
    answer(service, app, derm, question, addendum)
    updated = sink.wait_for(provider, count=4)[3]
    assert "addendum" in str(updated.message["Subject"]).lower(), advice.text
    assert f"Allergic contact dermatitis ({NAME})" in pdf_text(pdf_of(updated))

    shown = cli_json(config, "cases", "show", number)  # what was stored, decrypted
    assert sum(NAME in n["body"] for n in shown["notes"]) >= 2  # the conversation, as notes
    with app.sessions() as session:
        pdfs = session.execute(select(Consult.pdf_sha).where(Consult.pdf_sha != "")).scalars()
        stored_pdfs = [app.blobs.get(sha) for sha in pdfs]
    assert len(stored_pdfs) == 2 and all(NAME in pdf_text(pdf) for pdf in stored_pdfs)

    assert files_holding(config.storage_dir, NEEDLE) == []  # blobs (PDFs, mail, photos), keys
    sqlite = database_files(config)
    assert sqlite or not config.database_url.startswith("sqlite")
    assert [p for p in sqlite if NEEDLE in readable(p)] == []  # pages free or in use, the WAL
    assert rows_holding(app, NEEDLE) == []
    assert caplog.records and min(r.levelno for r in caplog.records) > logging.DEBUG
    assert NEEDLE not in caplog.text  # messages and any traceback logged with them
