"""The event bus: pyzmq messages that wake workers and feed the live dashboard.

Every audited change is announced after its transaction commits (audit.record notes it on the
session; the after-commit hook sends it). The database stays the source of truth: an event
carries only what changed (the audit action and the case id, never PHI), a lost event only
delays work, and every listener re-reads the database.

Shape: publishers PUSH to the broker, which PUBlishes to every subscriber. PUSH rather than
PUB on the way in because a connecting PUSH socket queues from the first send, where a PUB
socket drops everything until its subscriptions arrive; so even a one-shot `mailflow users
approve` gets its event through. The broker runs inside `mailflow serve` (or alone as
`mailflow bus` when the parts run on several machines).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from mailflow.config import Config

log = logging.getLogger(__name__)

PENDING = "bus_pending"  # session.info key: events waiting for the commit
PUBLISHER = "bus"  # session.info key: the Publisher (set on the sessionmaker)

# XPUB greets each new subscription with this, so a subscriber knows when it is heard.
WELCOME = b"~welcome"

# Audit actions that change nothing a listener cares about: reads and sign-ins.
QUIET_SUFFIXES = (".viewed", ".read", ".explained", ".access_denied")
QUIET_PREFIXES = ("web.",)


@dataclass(frozen=True)
class Endpoints:
    publish: str  # publishers connect here; the broker binds it
    subscribe: str  # subscribers connect here; the broker binds it


def endpoints(config: Config) -> Endpoints:
    """The configured addresses, or per-installation abstract Unix sockets: no port to pick,
    no file to clean up, and two installations on one machine (tests) never cross."""
    tag = hashlib.sha256(str(config.storage_dir.resolve()).encode()).hexdigest()[:16]
    return Endpoints(
        publish=config.bus.publish or f"ipc://@mailflow-{tag}-in",
        subscribe=config.bus.subscribe or f"ipc://@mailflow-{tag}-out",
    )


def topic_of(action: str) -> str:
    return action.split(".", 1)[0]


def is_quiet(action: str) -> bool:
    return action.startswith(QUIET_PREFIXES) or action.endswith(QUIET_SUFFIXES)


class Publisher:
    """One PUSH socket per process, shared by its threads under a lock. A send never blocks:
    the socket queues only to a broker it is connected to (IMMEDIATE), so with no broker an
    event is dropped at once, and a short-lived command does not wait for one at exit."""

    def __init__(self, config: Config) -> None:
        self.enabled = config.bus.enabled
        self.endpoint = endpoints(config).publish
        self.high_water = config.bus.queue_limit
        self.linger_ms = int(config.bus.linger_seconds * 1000)
        self.connect_wait_ms = int(config.bus.connect_wait_seconds * 1000)
        self._lock = threading.Lock()
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._pid = 0
        self._warned_at = 0.0
        self.sent = 0
        self.dropped = 0

    def _connected(self) -> zmq.Socket[bytes]:
        if self._socket is None or self._pid != os.getpid():  # never reuse a parent's socket
            context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
            sock: zmq.Socket[bytes] = context.socket(zmq.PUSH)
            try:
                sock.setsockopt(zmq.SNDHWM, self.high_water)
                sock.setsockopt(zmq.LINGER, self.linger_ms)
                sock.setsockopt(zmq.IMMEDIATE, 1)
                sock.connect(self.endpoint)
            except zmq.ZMQError:
                sock.close(0)
                context.term()
                raise
            self._context = context
            sock.poll(self.connect_wait_ms, zmq.POLLOUT)  # the first event: let it connect
            self._socket, self._pid = sock, os.getpid()
        return self._socket

    def publish(self, events: Iterable[dict[str, Any]]) -> None:
        """Never raises: it runs after a commit, which must stay a success whatever the bus."""
        if not self.enabled:
            return
        with self._lock:
            for ev in events:
                try:
                    sock = self._connected()
                    frame = json.dumps(ev, separators=(",", ":")).encode()
                    sock.send_multipart([ev["topic"].encode(), frame], flags=zmq.NOBLOCK)
                    self.sent += 1
                except Exception as exc:  # zmq.Again: no broker, or it is far behind
                    self.dropped += 1
                    self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute, not once an event
            self._warned_at = now
            log.warning("bus: no broker is taking events at %s (%s); live pages and other "
                        "processes learn of changes by polling until it is back",
                        self.endpoint, exc)

    def close(self) -> None:
        """Hand what was sent to the broker (up to the linger time), then let go."""
        with self._lock:
            if self._socket is not None and self._pid == os.getpid():
                self._socket.close()
                assert self._context is not None
                self._context.term()
            self._socket = self._context = None


def note(session: Session, action: str, case_id: int | None) -> None:
    """Queue an event on the session; it is sent only if the transaction commits."""
    if is_quiet(action) or PUBLISHER not in session.info:
        return
    session.info.setdefault(PENDING, []).append(
        {"topic": topic_of(action), "action": action, "case_id": case_id}
    )


def attach(sessions: sessionmaker[Session], publisher: Publisher) -> None:
    """Send each session's noted events after its real commit; forget them on rollback."""
    info = dict(sessions.kw.get("info") or {})
    info[PUBLISHER] = publisher
    sessions.configure(info=info)

    def after_commit(session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: the transaction around it has not committed yet
        pending = session.info.pop(PENDING, None)
        if pending:
            session.info[PUBLISHER].publish(pending)

    def after_rollback(session: Session, transaction: SessionTransaction) -> None:
        # A savepoint's rollback keeps what was noted: the outer transaction may still commit,
        # and an event for something that then did not happen costs a listener one re-read.
        if not transaction.nested:
            session.info.pop(PENDING, None)

    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_soft_rollback", after_rollback)


class BusError(Exception):
    """The broker cannot start; the message says where and why."""


class Broker:
    """PULL from publishers, PUB to subscribers, on its own thread."""

    def __init__(self, config: Config) -> None:
        self.endpoints = endpoints(config)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.forwarded = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bus-broker", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        inbound: zmq.Socket[bytes] = ctx.socket(zmq.PULL)
        outbound: zmq.Socket[bytes] = ctx.socket(zmq.XPUB)
        try:
            for sock in (inbound, outbound):
                sock.setsockopt(zmq.LINGER, 0)
            outbound.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
            try:
                inbound.bind(self.endpoints.publish)
                outbound.bind(self.endpoints.subscribe)
            except zmq.ZMQError as exc:
                self._error = BusError(
                    f"the event bus could not listen on {self.endpoints.publish} / "
                    f"{self.endpoints.subscribe}: {exc} (is another mailflow bus running "
                    "with this storage folder?)"
                )
                return
            finally:
                self._ready.set()
            poller = zmq.Poller()
            poller.register(inbound, zmq.POLLIN)
            poller.register(outbound, zmq.POLLIN)  # (un)subscriptions: read and let go
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                if outbound in ready:
                    _drain(outbound)
                if inbound in ready:
                    for frames in _drain(inbound):
                        outbound.send_multipart(frames)
                        self.forwarded += 1
        finally:
            inbound.close()
            outbound.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _event(frames: list[bytes]) -> dict[str, Any] | None:
    """A well-formed event, or None: a listener must survive anything the socket delivers."""
    if len(frames) != 2:
        return None
    try:
        event = json.loads(frames[1])
    except ValueError:
        return None
    if (not isinstance(event, dict) or not isinstance(event.get("topic"), str)
            or not isinstance(event.get("action"), str)
            or not isinstance(event.get("case_id"), int | None)):
        return None
    return {"topic": event["topic"], "action": event["action"], "case_id": event["case_id"]}


def _drain(sock: zmq.Socket[bytes]) -> list[list[bytes]]:
    out = []
    while True:
        try:
            out.append(sock.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return out


async def listen(config: Config, topics: Iterable[str] = ("",),
                 heard: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
    """Events as they arrive, for an asyncio consumer (the web, the worker's wake-ups).
    `heard` is set once the broker has the subscription (its welcome arrived)."""
    sock = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    if heard is not None:
        sock.setsockopt(zmq.SUBSCRIBE, WELCOME)
    sock.connect(endpoints(config).subscribe)
    try:
        while True:
            frames = await sock.recv_multipart()
            if frames == [WELCOME]:
                if heard is not None:
                    heard.set()
                continue
            event = _event(frames)
            if event is None:
                log.warning("bus: ignored a message that is not a mailflow event")
                continue
            yield event
    finally:
        sock.close()
