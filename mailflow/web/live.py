"""Live pages: /events streams server-sent events fed by the pyzmq bus.

One bus subscription per web process fans out to every open page. An event says only that
something of a kind changed (case, message, outbox, account, sla, report); the page then
fetches itself again, through the same role checks as any request, and swaps in what changed
(static/live.js). So no event ever carries PHI or anything a role may not see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from mailflow import bus
from mailflow.config import Config
from mailflow.db.models import Case, Role
from mailflow.web.deps import web_app, web_auth
from mailflow.web.security import SESSION_COOKIE

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

CLIENT_BACKLOG = 64  # events held for a slow page; past it the page just reloads its view
HELLO_WAIT_SECONDS = 3.0  # a broker answers in milliseconds; past this, say it is not there
HELLO_RETRY = 0.5  # ... and then check this often whether it has come


class LiveHub:
    """Fans bus events out to the open /events streams of this web process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clients: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        self.heard = asyncio.Event()  # the broker has our subscription

    @property
    def enabled(self) -> bool:
        return self.config.bus.enabled

    def join(self) -> asyncio.Queue[dict[str, Any] | None]:
        if self._task is None or self._task.done():
            self.heard.clear()
            self._task = asyncio.get_running_loop().create_task(self._pump())
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(CLIENT_BACKLOG)
        self.clients.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.clients.discard(queue)

    async def _pump(self) -> None:
        try:
            async for event in bus.listen(self.config, heard=self.heard):
                message = {"topic": event.get("topic", ""), "action": event.get("action", ""),
                           "case_id": event.get("case_id")}
                for queue in list(self.clients):
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live: the bus subscription failed; open pages fall back to polling")

    def close(self) -> None:
        """Server shutdown: end every stream so uvicorn can stop."""
        self.closing.set()
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()


def live_hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live
    return hub


def _for(role: str, item: dict[str, Any], mine: frozenset[int]) -> dict[str, Any] | None:
    """What a role may learn of an event: staff all of it; a provider only that one of their
    own cases changed, or that something without a case did (their lists may show it)."""
    if role in (Role.ADMIN, Role.DERMATOLOGIST):
        return item
    case_id = item.get("case_id")
    if case_id is None:
        return {"topic": item["topic"]}
    return {"topic": item["topic"], "case_id": case_id} if case_id in mine else None


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/events")
async def events(request: Request) -> Response:
    """The change stream of a signed-in page (text/event-stream)."""
    auth = web_auth(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    user = await run_in_threadpool(auth.user_for, cookie)
    if user is None:
        return Response("sign in first", status_code=401, media_type="text/plain")
    hub = live_hub(request)
    if not hub.enabled:
        return Response(status_code=204)  # EventSource stops; live.js refreshes on a timer
    heartbeat = hub.config.bus.live_heartbeat_seconds
    app = web_app(request)

    def own_cases(account_id: int) -> frozenset[int]:
        """A provider's case ids: their stream names these cases and only these."""
        with app.sessions() as session:
            return frozenset(session.execute(
                select(Case.id).where(Case.provider_id == account_id)).scalars())

    async def stream() -> AsyncIterator[bytes]:
        queue = hub.join()
        current = user
        mine = (await run_in_threadpool(own_cases, current.id)
                if current.role == Role.PROVIDER else frozenset())
        try:
            # "hello" once the broker hears us, so a page that says live misses nothing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.heard.wait(), timeout=HELLO_WAIT_SECONDS)
            live = hub.heard.is_set()
            yield b"retry: 3000\n\n" + _frame("hello", {"role": current.role, "live": live})
            checked = time.monotonic()
            while not hub.closing.is_set():
                try:
                    # not live yet: look again soon, and say so the moment the broker answers
                    item = await asyncio.wait_for(queue.get(),
                                                  timeout=heartbeat if live else HELLO_RETRY)
                except TimeoutError:
                    item = {}
                    if not live and hub.heard.is_set():
                        live = True
                        yield _frame("hello", {"role": current.role, "live": True})
                if item is None:
                    return
                if time.monotonic() - checked >= heartbeat:
                    # still signed in, busy or not? (signed out, expired, locked, disabled:
                    # the stream ends; a changed role or new cases apply from here)
                    checked = time.monotonic()
                    latest = await run_in_threadpool(auth.user_for, cookie)
                    if latest is None:
                        yield _frame("signed-out", {})
                        return
                    current = latest
                    if current.role == Role.PROVIDER:
                        mine = await run_in_threadpool(own_cases, current.id)
                    if not item:
                        yield b": keep-alive\n\n"
                if item:
                    shown = _for(current.role, item, mine)
                    if shown is not None:
                        yield _frame("change", shown)
        finally:
            hub.leave(queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
