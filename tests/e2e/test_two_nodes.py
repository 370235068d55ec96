"""Issue #13 item 2: two complete nodes (separate storage folders and processes, own ports) on
one PostgreSQL database, driven through their real doors only: SMTP in, the relay sink out,
HTTP to each node's web."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case, InboundMessage, MessageStatus, OutboundMessage, OutboxStatus
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import DERMS, PASSWORD, MigratedTemplates, make_config
from tests.support.backup import backup, new_database, restore
from tests.support.cases import CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import accepted_id
from tests.support.mail import FULL_FORM, case_email, reply_to, submit, wait_until
from tests.support.nodes import (
    Node,
    needs_postgres,
    nodes,
    postgres_database,
    start_all,
    start_roles,
    stop_all,
)
from tests.support.review import ANSWER, pdf_of, pdf_text
from tests.support.sink import Delivered, RelaySink
from tests.support.web import ADMIN

pytestmark = [needs_postgres, pytest.mark.xdist_group("nodes")]

PROVIDER = "dr.family@clinic.test"
PER_DOOR = 4  # cases sent to each node's door


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, migrated_templates: MigratedTemplates
            ) -> Iterator[tuple[list[Node], App, RelaySink]]:
    sink = RelaySink()
    sink.start()
    try:
        with postgres_database(migrated_templates) as url, \
                nodes(tmp_path_factory.mktemp("nodes"), url, sink, ("a", "b", "c")) as (made, app):
            with transaction(app.sessions) as session:
                accounts.add(session, email=PROVIDER, name="Dr Pat Family", role="provider",
                             password=PASSWORD, approved=True, license_state="NY")
                accounts.add(session, email=ADMIN, name="Ada Admin", role="admin",
                             password=PASSWORD, approved=True)
                for i, email in enumerate(DERMS):
                    accounts.add(session, email=email, name=f"Dr Derm {i + 1}",
                                 role="dermatologist", password=PASSWORD, approved=True,
                                 credentials="MD, FAAD")
            start_all(made[:2])  # c: a machine added later (test_adding_a_worker)
            yield made, app, sink
    finally:
        sink.stop()


class Stream:
    """A signed-in page's /events stream, read on a thread."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.events: list[tuple[str, dict[str, object]]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(httpx.HTTPError), \
                self.client.stream("GET", "/events", timeout=None) as response:
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((kind, json.loads(line[6:])))

    def live(self) -> bool:
        return any(kind == "hello" and data.get("live") for kind, data in self.events)

    def case_ids(self) -> set[object]:
        return {data.get("case_id") for kind, data in self.events if kind != "hello"}


def send_case(node: Node, n: int) -> int:
    form = FULL_FORM.replace("3 months", f"{n + 1} weeks")  # each its own message
    code, text = submit(node.smtp_port, PROVIDER, PASSWORD,
                        case_email(PROVIDER, CASES, form, three_photos()))
    assert code == 250, text
    return accepted_id(text)


def acks(sink: RelaySink) -> list[Delivered]:
    return [m for m in sink.to(PROVIDER) if "received" in str(m.message["Subject"])]


def case_of(app: App, message_id: int) -> str:
    def done() -> InboundMessage | None:
        with app.sessions() as session:
            row = session.get(InboundMessage, message_id)
            return row if row is not None and row.status == MessageStatus.PROCESSED else None

    row = wait_until(done, 60, f"message {message_id} to be processed")
    with app.sessions() as session:
        case = session.get(Case, row.case_id)
        assert case is not None
        return case.number


def processed_by(node: Node) -> set[int]:
    """The messages this node's worker processed, from its own log."""
    found: set[int] = set()
    for log in node.folder.glob("worker.*.log"):
        found |= {int(m) for m in re.findall(r"message (\d+): processed", log.read_text())}
    return found


def all_sent(app: App) -> list[OutboundMessage] | None:
    with app.sessions() as session:
        rows = list(session.scalars(select(OutboundMessage)))
    return rows if rows and all(r.status == OutboxStatus.SENT for r in rows) else None


def test_cases_at_either_door_are_processed_on_both_and_shown_live_on_both_webs(
    cluster: tuple[list[Node], App, RelaySink],
) -> None:
    (a, b, _c), app, sink = cluster
    browsers = {node.name: node.client(ADMIN, PASSWORD) for node in (a, b)}
    streams = {name: Stream(client) for name, client in browsers.items()}
    wait_until(lambda: all(s.live() for s in streams.values()), 30, "both live pages")

    ids = [send_case(node, n) for n in range(PER_DOOR) for node in (a, b)]
    numbers = [case_of(app, i) for i in ids]
    assert len(set(numbers)) == len(ids)
    # both workers took part (the bus wakes whichever is free; both poll the database)
    wait_until(lambda: set(ids) <= processed_by(a) | processed_by(b), 30, "the workers' logs")
    assert set(ids) & processed_by(a) and set(ids) & processed_by(b)
    assert not processed_by(a) & processed_by(b)

    rows = wait_until(lambda: all_sent(app), 60, "every reply to be sent")
    with app.sessions() as session:
        case_ids = set(session.scalars(select(Case.id).where(Case.number.in_(numbers))))
    got = [m for m in acks(sink) if any(n in str(m.message["Subject"]) for n in numbers)]
    assert sorted(m.message["Message-ID"] for m in got) == sorted(
        r.message_id for r in rows if r.kind == "ack" and r.case_id in case_ids)  # each once
    assert len(got) == len(ids)

    for name, client in browsers.items():  # either web: every case, whichever door
        listed = {c["number"] for c in client.get("/api/cases").json()["cases"]}
        assert set(numbers) <= listed, name
        page = client.get(f"/cases/{numbers[0]}")
        assert page.status_code == 200 and numbers[0] in page.text
        # and each was announced live on both, wherever it was processed
        wait_until(lambda s=streams[name]: case_ids <= s.case_ids(), 30, f"{name}'s live events")
    for client in browsers.values():
        client.close()


def test_a_reply_to_node_a_for_a_case_opened_on_node_b(
    cluster: tuple[list[Node], App, RelaySink],
) -> None:
    (a, b, _c), app, sink = cluster
    number = case_of(app, send_case(b, 99))
    notification = wait_until(lambda: next(
        (m for m in sink.messages if number in str(m.message["Subject"])
         and set(m.rcpt_tos) & set(DERMS)), None), 60, f"{number}'s notification")
    derm = next(iter(set(notification.rcpt_tos) & set(DERMS)))
    msg, address = reply_to(notification, derm, ANSWER)
    code, text = submit(a.smtp_port, derm, PASSWORD, msg, rcpt=[address])
    assert code == 250, text
    report = wait_until(lambda: next(
        (m for m in sink.to(PROVIDER) if number in str(m.message["Subject"])
         and any(p.get_content_type() == "application/pdf"
                 for p in m.message.iter_attachments())), None), 90, "the report")
    assert "Nummular eczema" in pdf_text(pdf_of(report))
    derm_web = b.client(derm, PASSWORD)
    try:
        page = derm_web.get(f"/cases/{number}")
        assert "Nummular eczema" in page.text
    finally:
        derm_web.close()


def test_every_node_keeps_its_own_folder_and_no_blob_on_disk(
    cluster: tuple[list[Node], App, RelaySink],
) -> None:
    (a, b, _c), _app, _sink = cluster
    assert a.folder != b.folder
    for node in (a, b):
        blobs = node.config.storage_dir / "blobs"
        on_disk = [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []
        assert on_disk == []
        assert not list((node.config.storage_dir / "keys").glob("*master*"))



def test_adding_a_worker(cluster: tuple[list[Node], App, RelaySink]) -> None:
    """docs/deploy.md "Adding a worker": a machine with the same config.toml, the key in its
    environment and `mailflow worker`; it takes work as soon as it runs."""
    (a, b, c), app, _sink = cluster
    c.start("worker")
    stop_all([a, b], ("worker",))  # the first machines' workers stop: only c's can work
    assert [node.procs["worker"].popen.returncode for node in (a, b)] == [0, 0]
    try:
        message_id = send_case(a, 7)
        case_of(app, message_id)
        assert message_id in processed_by(c)
    finally:
        start_roles([(a, "worker"), (b, "worker")])
        stop_all([c], ("worker",))  # removing a worker: a stop, and the others carry on

def test_a_backup_restores_the_database_with_its_blobs_elsewhere(
    cluster: tuple[list[Node], App, RelaySink], tmp_path: Path,
) -> None:
    """docs/deploy.md "Backup and restore with PostgreSQL": `mailflow backup` while both nodes
    run, restored into an empty database on a new machine that has the same key in its
    environment (the archive holds none: the key never was on a disk)."""
    (_a, b, _c), app, _sink = cluster
    number = case_of(app, send_case(b, 8))
    archive = tmp_path / "nodes.backup"
    backup(b.config, archive)
    with new_database("postgres", tmp_path) as url:
        target = make_config(tmp_path / "new-machine", url, storage={"blobs": "database"})
        restore(target, archive)
        assert "audit chain intact" in run_cli(target, "audit", "verify").stdout
        shown = cli_json(target, "cases", "show", number)
        assert len(shown["images"]) == 3  # the photos, read from the restored database
        blobs = target.storage_dir / "blobs"
        assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
