"""The unauthenticated /healthz and /metrics (no sign-in, no PHI)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from mailflow.web.deps import web_app
from mailflow.web.metrics import render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz(request: Request) -> Response:
    try:
        with web_app(request).engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.error("health check: the database is not reachable (%s)", type(exc).__name__)
        return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
    return JSONResponse({"ok": True})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(render(request.app.state.metrics),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
