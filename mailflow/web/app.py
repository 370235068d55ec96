"""The admin web: FastAPI with server-rendered Jinja2 pages (templates/web/), a JSON API under
/api/, /healthz and /metrics.

Endpoints are plain `def`: FastAPI runs them on its thread pool, so database work never blocks
the event loop that `mailflow serve` shares with the SMTP door. Sign-in, roles and CSRF live in
security.py; what each page shows is read by views.py.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailflow.app import App
from mailflow.web import (
    account,
    api,
    certificates,
    charts,
    live,
    pages,
    registration,
    signup,
    urgency,
)
from mailflow.web.deps import NeedsAuthenticator, NotSignedIn
from mailflow.web.metrics import make_registry
from mailflow.web.security import WebAuth, load_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# Pages hold PHI: no caching anywhere, no framing, scripts and styles from this origin only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


NUMERIC_VALUE_OUT_OF_RANGE = "22003"  # PostgreSQL's SQLSTATE for an integer too big


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and no-store off /static/, and Strict-Transport-Security when
    the site is reached over HTTPS) to every response. Plain ASGI, not BaseHTTPMiddleware,
    which breaks long-lived streams (/events) when a client goes away."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.headers = dict(SECURITY_HEADERS)
        if hsts_seconds:
            self.headers["Strict-Transport-Security"] = f"max-age={hsts_seconds}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)


def _templates(app: App) -> Jinja2Templates:
    zone = app.sla.calendar.timezone
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(app.config.templates_dir / "web")),
        autoescape=True,  # every template, whatever its name: provider-typed text is data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def local(value: datetime | None, fmt: str = "%a %Y-%m-%d %H:%M") -> str:
        return "" if value is None else value.astimezone(zone).strftime(fmt) + " ET"

    def minutes(value: float | None) -> str:
        if value is None:
            return "—"
        sign, value = ("−" if value < 0 else ""), abs(value)
        hours, mins = divmod(int(round(value)), 60)
        return f"{sign}{hours} h {mins:02d} min" if hours else f"{sign}{mins} min"

    env.filters["local"] = local
    env.filters["minutes"] = minutes
    env.filters["label"] = lambda v: str(v).replace("_", " ")
    return Jinja2Templates(env=env)


def create_web_app(app: App) -> FastAPI:
    auth = WebAuth(app.config, app.sessions, load_secret(app.config))
    web = FastAPI(
        title="mailflow",
        summary="Teledermatology consults: the admin and clinician API",
        docs_url=None,  # Swagger UI loads its scripts from a CDN: not here
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    web.state.app = app
    web.state.auth = auth
    web.state.templates = _templates(app)
    web.state.metrics = make_registry(app)
    web.state.live = live.LiveHub(app.config)
    web.mount("/static", StaticFiles(directory=STATIC), name="static")

    web_cfg = app.config.web
    web.add_middleware(SecurityHeaders,
                       hsts_seconds=web_cfg.hsts_max_age_seconds if web_cfg.hsts else 0)

    @web.exception_handler(NeedsAuthenticator)
    async def to_account(request: Request, _exc: NeedsAuthenticator) -> Response:
        return RedirectResponse("/account", status_code=303)

    @web.exception_handler(NotSignedIn)
    async def to_login(request: Request, _exc: NotSignedIn) -> Response:
        target = request.url.path
        if request.method == "GET" and request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(pages.login_url(target), status_code=303)

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        user = getattr(request.state, "user", None)  # only if already looked up: no I/O here
        return web.state.templates.TemplateResponse(
            request, "error.html.j2",
            {"status": exc.status_code, "message": _message(exc), "user": user,
             "csrf": user.csrf if user else "", "flash": None, "nav": ""},
            status_code=exc.status_code,
        )

    @web.exception_handler(OverflowError)
    @web.exception_handler(DataError)
    async def number_out_of_range(request: Request, exc: Exception) -> Response:
        # An id, position or version too big for the database's integers (SQLite raises
        # OverflowError, PostgreSQL 22003) names nothing that exists: "not found", not a 500.
        if isinstance(exc, DataError) and not _out_of_range(exc):
            raise exc
        return await http_error(request, StarletteHTTPException(404))

    web.include_router(pages.router)
    web.include_router(registration.router)
    web.include_router(signup.router)
    web.include_router(charts.router)
    web.include_router(api.router)
    web.include_router(live.router)
    web.include_router(account.router)
    web.include_router(certificates.router)
    web.include_router(urgency.router)
    return web


def _out_of_range(exc: DataError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == NUMERIC_VALUE_OUT_OF_RANGE


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/healthz", "/metrics")


def _message(exc: HTTPException | StarletteHTTPException) -> str:
    defaults: dict[int, str] = {
        403: "You do not have access to this page.",
        404: "There is nothing here.",
        405: "That action is not available here.",
    }
    detail: Any = exc.detail
    if isinstance(detail, str) and detail and detail not in ("Not Found", "Forbidden",
                                                             "Method Not Allowed"):
        return detail
    return defaults.get(exc.status_code, "Something went wrong.")
