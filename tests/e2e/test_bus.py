"""The event bus (pyzmq): events after commit only, no PHI in them, parts on separate
processes waking each other, and live pages fed by server-sent events."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import zmq

from mailflow import audit, bus
from mailflow.app import App
from mailflow.bus import Broker, Publisher
from mailflow.config import Config
from mailflow.db.session import transaction
from tests.conftest import PASSWORD
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.sink import RelaySink, free_port
from tests.support.web import ADMIN, people, sign_in

__all__ = ["people"]  # the web tests' accounts fixture

PROBE = {"topic": "probe", "action": "probe.ping", "case_id": None}


def until_heard(app: App, heard: Callable[[], bool], what: str) -> None:
    """ZeroMQ subscriptions take effect asynchronously: publish probes until one arrives."""
    def probe() -> bool:
        app.bus.publish([PROBE])
        return heard()
    wait_until(probe, 10, what)


@contextmanager
def subscribed(config: Config) -> Iterator[zmq.Socket[bytes]]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(bus.endpoints(config).subscribe)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: zmq.Socket[bytes], wait_ms: int) -> list[dict[str, object]]:
    out = []
    while sock.poll(wait_ms):
        _topic, frame = sock.recv_multipart()
        event = json.loads(frame)
        if event != PROBE:
            out.append(event)
        wait_ms = 200
    return out


def ready(app: App, sock: zmq.Socket[bytes]) -> None:
    until_heard(app, lambda: bool(sock.poll(100)) and sock.recv_multipart() is not None,
                "the subscription to take effect")
    received(sock, 200)  # any further probes


def test_events_follow_commits_only_and_carry_no_phi(app: App, config: Config) -> None:
    broker = Broker(config)
    broker.start()
    try:
        with subscribed(config) as sock:
            ready(app, sock)
            with pytest.raises(RuntimeError), transaction(app.sessions) as session:
                audit.record(session, "case.updated", case_id=None,
                             detail={"patient": "Jane Synthetic"})
                raise RuntimeError("rolled back")
            with transaction(app.sessions) as session:
                audit.record(session, "case.viewed", actor="someone")  # a read: not announced
                audit.record(session, "outbox.queued", detail={"to": "x@example.test"})
                # a savepoint that rolls back inside it takes nothing else with it
                with contextlib.suppress(RuntimeError), session.begin_nested():
                    raise RuntimeError("only the savepoint")
                audit.record(session, "outbox.retry")
            events = received(sock, 3000)
    finally:
        broker.stop()
    assert events == [{"topic": "outbox", "action": "outbox.queued", "case_id": None},
                      {"topic": "outbox", "action": "outbox.retry", "case_id": None}]


def test_a_publisher_without_a_broker_drops_and_carries_on(config: Config) -> None:
    publisher = Publisher(config)
    started = time.monotonic()
    publisher.publish([{"topic": "case", "action": "case.submitted", "case_id": 1}] * 3)
    publisher.close()
    assert publisher.dropped == 3 and publisher.sent == 0
    assert time.monotonic() - started < config.bus.linger_seconds  # nobody waited for a broker


def test_a_one_shot_command_gets_its_event_to_the_broker(app: App, config: Config,
                                                         provider: str) -> None:
    broker = Broker(config)
    broker.start()
    try:
        with subscribed(config) as sock:
            ready(app, sock)
            done = subprocess.run(
                [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
                 "users", "add", "--role", "provider", "--email", "np.new@clinic.test",
                 "--name", "NP New", "--approved"],
                capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0, done.stderr
            events = received(sock, 5000)
    finally:
        broker.stop()
    assert {"topic": "account", "action": "account.created", "case_id": None} in events


class Part:
    """One `mailflow <part>` process, as a split deployment runs it."""

    def __init__(self, config: Config, part: str, env: dict[str, str]) -> None:
        self.log = config.base_dir / f"{part}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailflow", "--config",
                 str(config.base_dir / "config.toml"), part],
                env={**os.environ, **env}, stdout=out, stderr=out,
            )
        wait_until(lambda: "stop with Ctrl-C" in self.log.read_text()
                   or self.proc.poll() is not None, 60, f"mailflow {part} to start")
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> str:
        """Stop it; the output if it did not end cleanly, else ''."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        output = self.log.read_text()
        return output if code != 0 or "Traceback" in output else ""


def stop_all(parts: list[Part]) -> None:
    problems = [p for p in (part.stop() for part in reversed(parts)) if p]
    assert not problems, "\n\n".join(problems)


class EventStream:
    """A signed-in browser's /events stream, read on a thread."""

    def __init__(self, client: httpx.Client) -> None:
        self.events: list[tuple[str, str]] = []
        self.status = 0
        self._client = client
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/events", timeout=httpx.Timeout(5, read=None)) as r:
                self.status = r.status_code
                name = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((name, line[6:]))
        except httpx.HTTPError:
            pass

    def changes(self) -> list[dict[str, object]]:
        found = [json.loads(data) for name, data in self.events if name == "change"]
        return [c for c in found if c.get("topic") != "probe"]


def test_split_parts_wake_each_other_and_feed_the_live_page(
    app: App, config: Config, sink: RelaySink, provider: str, people: dict[str, str],
) -> None:
    smtp_port, web_port = free_port(), free_port()
    # Polling so slow that only an event can explain a prompt answer.
    env = {"MAILFLOW_SMTP__PORT": str(smtp_port), "MAILFLOW_WEB__PORT": str(web_port),
           "MAILFLOW_INTAKE__POLL_SECONDS": "120", "MAILFLOW_OUTBOUND__POLL_SECONDS": "120"}
    parts = [Part(config, "bus", env)]
    try:
        parts += [Part(config, name, env) for name in ("worker", "smtpd", "web")]
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}") as admin:
            assert sign_in(admin, ADMIN).status_code == 303  # type: ignore[arg-type]
            stream = EventStream(admin)
            # hello comes once the broker has the web's subscription: nothing is missed after
            wait_until(lambda: ("hello", '{"role":"admin","live":true}') in stream.events, 10,
                       "the live stream to open")
            started = time.monotonic()
            code, _ = submit(smtp_port, provider, PASSWORD,
                             case_email(provider, CASES, FULL_FORM, three_photos()))
            assert code == 250
            ack = sink.wait_for(provider, timeout=30)[0]
            assert "received" in str(ack.message["Subject"])
            assert time.monotonic() - started < 30  # the worker woke on the event, not a poll
            wait_until(lambda: any(c.get("topic") == "case" for c in stream.changes()), 10,
                       "a case event on the live stream")
            page = admin.get("/")
            assert "DERM-" in page.text
            case_events = [c for c in stream.changes() if c.get("topic") == "case"]
            assert all(set(c) == {"topic", "action", "case_id"} for c in case_events)
    finally:
        stop_all(parts)


def test_the_live_stream_needs_a_sign_in_and_tells_a_provider_little(
    app: App, config: Config, provider: str, people: dict[str, str], tmp_path: Path,
) -> None:
    web_port = free_port()
    env = {"MAILFLOW_WEB__PORT": str(web_port)}
    parts = [Part(config, "bus", env), Part(config, "web", env)]
    try:
        base = f"http://127.0.0.1:{web_port}"
        assert httpx.get(base + "/events").status_code == 401
        with httpx.Client(base_url=base) as browser:
            assert sign_in(browser, provider).status_code == 303  # type: ignore[arg-type]
            stream = EventStream(browser)
            wait_until(lambda: ("hello", '{"role":"provider","live":true}') in stream.events,
                       10, "the provider's stream to open")
            app.bus.publish([  # another provider's case, then something of no case
                {"topic": "case", "action": "case.updated", "case_id": 7},
                {"topic": "account", "action": "account.created", "case_id": None}])
            wait_until(lambda: bool(stream.changes()), 10, "a change on the provider's stream")
            assert stream.changes() == [{"topic": "account"}]
    finally:
        stop_all(parts)


def test_without_a_broker_a_page_is_told_it_is_not_live_until_one_comes(
    app: App, config: Config, people: dict[str, str],
) -> None:
    web_port = free_port()
    parts = [Part(config, "web", {"MAILFLOW_WEB__PORT": str(web_port)})]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}") as browser:
            assert sign_in(browser, ADMIN).status_code == 303  # type: ignore[arg-type]
            stream = EventStream(browser)
            # live.js then says "refreshing every minute" and keeps the page fresh on a timer
            wait_until(lambda: ("hello", '{"role":"admin","live":false}') in stream.events,
                       10, "the stream's hello")
            parts.append(Part(config, "bus", {}))  # the broker comes up: the page is told
            wait_until(lambda: ("hello", '{"role":"admin","live":true}') in stream.events,
                       10, "the stream's second hello")
    finally:
        stop_all(parts)


def test_a_busy_stream_still_ends_when_its_session_does(
    app: App, config: Config, people: dict[str, str],
) -> None:
    web_port = free_port()
    env = {"MAILFLOW_WEB__PORT": str(web_port), "MAILFLOW_BUS__LIVE_HEARTBEAT_SECONDS": "1"}
    parts = [Part(config, "bus", env), Part(config, "web", env)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}") as browser:
            assert sign_in(browser, ADMIN).status_code == 303  # type: ignore[arg-type]
            stream = EventStream(browser)
            wait_until(lambda: ("hello", '{"role":"admin","live":true}') in stream.events,
                       10, "the stream to open")
            with httpx.Client(base_url=f"http://127.0.0.1:{web_port}",
                              cookies=browser.cookies) as same_session:
                page = same_session.get("/")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                assert token is not None
                same_session.post("/logout", data={"csrf_token": token.group(1)})

            def busy_and_ended() -> bool:  # events keep coming all the while
                app.bus.publish([{"topic": "case", "action": "case.updated", "case_id": 1}])
                return any(name == "signed-out" for name, _ in stream.events)

            wait_until(busy_and_ended, 10, "the stream to end after the sign-out")
    finally:
        stop_all(parts)
