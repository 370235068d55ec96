"""The HTML pages: sign-in, the SLA overview, a case, the quarantine, the outbox; and the
unauthenticated /healthz and /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select, text

from mailflow import audit
from mailflow.db.models import (
    Account,
    Case,
    CaseImage,
    CaseState,
    Consult,
    Role,
)
from mailflow.db.session import transaction
from mailflow.outbound.delivery import retry_now
from mailflow.store.blobs import BlobError
from mailflow.web import views
from mailflow.web.deps import (
    admin_page,
    admin_post,
    current_user,
    page_user,
    posted_by,
    web_app,
    web_auth,
)
from mailflow.web.metrics import render
from mailflow.web.security import (
    CODE_COOKIE,
    FLASH_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    SignIn,
    WebUser,
)
from mailflow.workflow import cases as case_flow
from mailflow.workflow import quarantine
from mailflow.workflow.assign import DeclinedBefore, assign_by_hand
from mailflow.workflow.intake_cases import patient_fields_from_reply
from mailflow.workflow.urgency import CHANGEABLE, asked_in, set_urgency

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

GENERIC_LOGIN_ERROR = (
    "That email and password did not sign you in. After several failed attempts from one "
    "place, sign-in from there is paused for a while."
)


WRONG_CODE = ("That code did not match. Type the six digits your authenticator app shows now "
              "for mailflow.")
CODE_EXPIRED = "The time to type the code ran out. Sign in again."


def login_url(target: str = "/") -> str:
    return "/login" if target in ("", "/") else f"/login?next={quote(target, safe='')}"


def _safe_next(target: str | None) -> str:
    # only a path on this site: never //host or a scheme (an open redirect)
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render_page(request: Request, name: str, user: WebUser | None, status: int = 200,
                **context: Any) -> Response:
    auth = web_auth(request)
    flash = auth.read_flash(request.cookies.get(FLASH_COOKIE))
    response: Response = request.app.state.templates.TemplateResponse(
        request, name,
        {"user": user, "csrf": user.csrf if user else "", "flash": flash,
         "nav": context.pop("nav", ""), **context},
        status_code=status,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def back(request: Request, to: str, kind: str, message: str) -> Response:
    """After an action: a one-shot message and a redirect (POST-redirect-GET)."""
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(FLASH_COOKIE, web_auth(request).flash_value(kind, message), max_age=300,
                        httponly=True, samesite="strict", path="/",
                        secure=web_app(request).config.web.secure_cookies)
    return response


# --- sign-in --------------------------------------------------------------------------------


def _pre_form(request: Request, template: str, status: int, **context: Any) -> Response:
    """A sign-in step's page, with a fresh pre-session cookie binding its form's token."""
    cookie, token = web_auth(request).new_pre_session()
    response = render_page(request, template, None, status, login_csrf=token, **context)
    _cookie(request, response, PRE_COOKIE, cookie, 3600)
    return response


def _login_form(request: Request, error: str = "", email: str = "", status: int = 200,
                next_url: str = "/") -> Response:
    return _pre_form(request, "login.html.j2", status, error=error, email=email,
                     next_url=_safe_next(next_url))


def _pre_form_checked(request: Request, csrf_token: str) -> str:
    """A sign-in step's form must carry its pre-session's CSRF token; the client's address."""
    auth = web_auth(request)
    nonce = auth.pre_session_nonce(request.cookies.get(PRE_COOKIE))
    if nonce is None or not auth.csrf_ok("pre:" + nonce, csrf_token):
        raise HTTPException(403, "The sign-in form has expired. Reload the page and try again.")
    return request.client.host if request.client else ""


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next_url=next)


@router.post("/login")
async def login(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    peer = _pre_form_checked(request, csrf_token)
    slowed = await _slow_down(request, peer)
    result = await run_in_threadpool(web_auth(request).sign_in, email[:320], password[:1024],
                                     peer, slowed)
    return await run_in_threadpool(_after_password, request, result, email[:320], next)


async def _slow_down(request: Request, peer: str) -> float:
    """The lockout's wait for this address, before the check: on the event loop (a sleep
    holds no thread, so slowed sign-ins cannot starve the pages' thread pool)."""
    delay = await run_in_threadpool(web_auth(request).delay_for, peer)
    if delay > 0:
        await asyncio.sleep(delay)
    return delay


def _after_password(request: Request, result: SignIn, email: str, next_url: str) -> Response:
    if result.code_cookie is not None:
        response = RedirectResponse(f"/login/code?next={quote(_safe_next(next_url), safe='')}",
                                    status_code=303)
        _cookie(request, response, CODE_COOKIE, result.code_cookie,
                int(web_app(request).config.web.code_minutes * 60))
        return response
    if result.session_cookie is None:
        return _login_form(request, GENERIC_LOGIN_ERROR, email, 400, next_url)
    return _signed_in(request, result.session_cookie, next_url)


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        path="/", secure=web_app(request).config.web.secure_cookies)


def _signed_in(request: Request, session_cookie: str, next_url: str) -> Response:
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    _cookie(request, response, SESSION_COOKIE, session_cookie, web_auth(request).max_age)
    response.delete_cookie(PRE_COOKIE, path="/")
    response.delete_cookie(CODE_COOKIE, path="/")
    return response


def _code_form(request: Request, error: str = "", status: int = 200,
               next_url: str = "/") -> Response:
    return _pre_form(request, "login_code.html.j2", status, error=error,
                     next_url=_safe_next(next_url))


@router.get("/login/code")
def login_code_page(request: Request, next: str = "/") -> Response:
    if not request.cookies.get(CODE_COOKIE):
        return RedirectResponse(login_url(_safe_next(next)), status_code=303)
    return _code_form(request, next_url=next)


@router.post("/login/code")
async def login_code(
    request: Request,
    code: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    peer = _pre_form_checked(request, csrf_token)
    slowed = await _slow_down(request, peer)
    result = await run_in_threadpool(web_auth(request).sign_in_code,
                                     request.cookies.get(CODE_COOKIE), code, peer, slowed)
    return await run_in_threadpool(_after_code, request, result, next)


def _after_code(request: Request, result: SignIn, next_url: str) -> Response:
    if result.session_cookie is not None:
        return _signed_in(request, result.session_cookie, next_url)
    if result.expired or result.code_cookie is None:
        response = _login_form(request, CODE_EXPIRED if result.expired else
                               GENERIC_LOGIN_ERROR, status=400, next_url=next_url)
        response.delete_cookie(CODE_COOKIE, path="/")
        return response
    return _code_form(request, WRONG_CODE, 400, next_url)


@router.post("/logout")
def logout(request: Request, user: Annotated[WebUser, Depends(posted_by)]) -> Response:
    web_auth(request).sign_out(user)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- overview -------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, user: Annotated[WebUser, Depends(page_user)],
             sort: str = views.DEFAULT_SORT, dir: str = "asc") -> Response:
    app = web_app(request)
    if user.role == Role.PROVIDER:
        with app.sessions() as session:
            mine = views.provider_cases(session, user)
        return render_page(request, "provider_home.html.j2", user, cases=mine, nav="home")
    sort = sort if sort in views.SORTS else views.DEFAULT_SORT
    descending = dir == "desc"
    with app.sessions() as session:
        rows, total = views.open_cases(app, session, user, sort, descending,
                                       limit=app.config.web.overview_limit)
        counts = views.state_counts(session, user)
        met = views.met_today(app, session, user)
        breached = views.breached_count(session, user)
    summary = {s: sum(1 for r in rows if r.sla == s) for s in ("on-track", "at-risk", "paused")}
    summary["breached"] = breached
    return render_page(request, "overview.html.j2", user, rows=rows, total=total,
                       counts=counts, met=met, sort=sort, descending=descending,
                       summary=summary, open_states=views.OPEN_STATES, nav="overview")


# --- a case ---------------------------------------------------------------------------------


def denied(app_user: WebUser, session: Any, case: Case, what: str) -> None:
    """Write the refusal to the audit log (in the caller's transaction)."""
    audit.record(session, "case.access_denied", actor=app_user.email, case_id=case.id,
                 entity="case", entity_id=case.number,
                 detail={"role": app_user.role, "what": what, "via": "web"})
    log.warning("web: account %d (%s) refused %s of case %d", app_user.id, app_user.role,
                what, case.id)


@router.get("/cases/{number}")
def case_page(request: Request, number: str,
              user: Annotated[WebUser, Depends(page_user)]) -> Response:
    app = web_app(request)
    refused = False
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404, f"There is no case {number[:40]}.")
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, "case")
            refused = True
            data: dict[str, Any] = {}
            derms: list[tuple[str, str]] = []
            can_comment = False
        else:
            data = views.case_view(app, session, case, user)
            derms = views.dermatologists(session) if user.is_admin else []
            can_comment = user.id in (case.provider_id, case.assignee_id)
            audit.record(session, "case.viewed", actor=user.email, case_id=case.id,
                         entity="case", entity_id=case.number, detail={"via": "web"})
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    return render_page(request, "case.html.j2", user, case=data, derms=derms,
                       can_act=user.is_admin, can_comment=can_comment,
                       closed=data["state"] == CaseState.CLOSED,
                       assignable=data["state"] in views.OPEN_STATES, nav="case")


def _photo(request: Request, number: str, position: int, user: WebUser, copy: str) -> Response:
    app = web_app(request)
    refused = False
    sha, content_type = "", ""
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404)
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, f"photo {copy}")
            refused = True
        else:
            image = session.execute(
                select(CaseImage).where(CaseImage.case_id == case.id,
                                        CaseImage.position == position)
            ).scalar_one_or_none()
            if image is None:
                raise HTTPException(404)
            # only derived copies leave the store: both are EXIF-free (parse/images.py)
            sha = image.thumbnail_sha if copy == "thumb" else image.clean_sha
            content_type = "image/jpeg" if copy == "thumb" else image.clean_content_type
            audit.record(session, "photo.viewed", actor=user.email, case_id=case.id,
                         entity="case_image", entity_id=image.id,
                         detail={"position": position, "copy": copy, "via": "web"})
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    try:
        data = app.blobs.get(sha)
    except BlobError as exc:
        log.error("photo blob of case image could not be read: %s", exc)
        raise HTTPException(404) from exc
    return Response(data, media_type=content_type, headers={
        "Content-Disposition": "inline", "Cache-Control": "private, no-store"})


@router.get("/cases/{number}/photos/{position:int}/thumb")
def photo_thumb(request: Request, number: str, position: int,
                user: Annotated[WebUser, Depends(page_user)]) -> Response:
    return _photo(request, number, position, user, "thumb")


@router.get("/cases/{number}/photos/{position:int}/photo")
def photo_full(request: Request, number: str, position: int,
               user: Annotated[WebUser, Depends(page_user)]) -> Response:
    return _photo(request, number, position, user, "full")


@router.get("/cases/{number}/report.pdf")
def report_pdf(request: Request, number: str, user: Annotated[WebUser, Depends(page_user)],
               version: int | None = None) -> Response:
    app = web_app(request)
    refused = False
    sha = ""
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404)
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, "report")
            refused = True
        else:
            query = select(Consult).where(Consult.case_id == case.id, Consult.pdf_sha != "")
            if version is not None:
                query = query.where(Consult.version == version)
            consult = session.execute(
                query.order_by(Consult.version.desc()).limit(1)).scalar_one_or_none()
            if consult is None:
                raise HTTPException(404, f"{case.number} has no consult report yet.")
            sha = consult.pdf_sha
            audit.record(session, "report.read", actor=user.email, case_id=case.id,
                         entity="case", entity_id=case.number,
                         detail={"version": consult.version, "via": "web"})
            number = case.number
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    data = app.blobs.get(sha)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{number}-consult.pdf"',
        "Cache-Control": "private, no-store"})


@router.post("/cases/{number}/reassign")
def reassign(request: Request, number: str, user: Annotated[WebUser, Depends(admin_post)],
             to: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = "") -> Response:
    """To someone who declined the case: a confirmation step with their reason first."""
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            case = views.find_case(session, number)
            if case is None:
                raise HTTPException(404)
            derm = assign_by_hand(app, session, case, to, actor=user.email,
                                  force=confirm == "yes")
            number, who = case.number, derm.name
    except DeclinedBefore as exc:
        return render_page(request, "confirm_assign.html.j2", user, number=number.upper(),
                           to=exc.email, derm_name=exc.name, decline=exc.decline,
                           nav="case")
    except case_flow.TransitionError as exc:
        return back(request, f"/cases/{number}", "error", str(exc))
    again = " (who had declined it)" if confirm == "yes" else ""
    return back(request, f"/cases/{number}", "ok", f"{number} is assigned to {who}{again}; "
                                                     "the case was emailed to them.")


@router.post("/cases/{number}/resend-report")
def resend(request: Request, number: str,
           user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    from mailflow.workflow.consult_report import resend_report

    app = web_app(request)
    with transaction(app.sessions) as session:
        query = select(Case).where(Case.number == number.upper())
        case = session.execute(query).scalar_one_or_none()
        if case is None:
            raise HTTPException(404, "No such case.")
        try:
            resend_report(app, session, case, actor=user.email)
        except ValueError as exc:
            return back(request, f"/cases/{case.number}", "error", str(exc) + ".")
        to = case.provider.email
    return back(request, f"/cases/{number.upper()}", "ok", f"The report was sent again to {to}.")


@router.post("/cases/{number}/comment")
def add_comment(request: Request, number: str, user: Annotated[WebUser, Depends(posted_by)],
                body: Annotated[str, Form()] = "") -> Response:
    """The referring provider or the assigned dermatologist writes on the thread."""
    from mailflow.workflow.review import comment

    app = web_app(request)
    text_ = body.strip()[:20000]
    with transaction(app.sessions) as session:
        query = select(Case).where(Case.number == number.upper()).with_for_update()
        case = session.execute(query).scalar_one_or_none()
        if case is None:
            raise HTTPException(404, "No such case.")
        author = session.get(Account, user.id)
        allowed = author is not None and (
            case.provider_id == author.id or case.assignee_id == author.id)
        if allowed and text_:
            assert author is not None
            # "Urgency: urgent" and patient details count here as they do by email
            patient_fields_from_reply(session, app.keys, case, author, text_)
            wanted = asked_in(text_)
            if wanted and case.state in CHANGEABLE:
                set_urgency(app, session, case, wanted, author)
            comment(app, session, case, author, text_)
    if not allowed:
        with transaction(app.sessions) as session:  # the refusal is kept: its own transaction
            denied(user, session, case, "comment")
        raise HTTPException(403, "Only the referring provider and the assigned dermatologist "
                                 "write on a case.")
    if not text_:
        return back(request, f"/cases/{number.upper()}", "error", "The comment is empty.")
    return back(request, f"/cases/{number.upper()}", "ok",
                "Your comment is added and was emailed to the other side.")


@router.post("/cases/{number}/close")
def close(request: Request, number: str,
          user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    from mailflow.workflow.transitions import BY_THE_TEAM, close_case

    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            case = views.find_case(session, number)
            if case is None:
                raise HTTPException(404)
            # the transition tells the provider and the dermatologist, as from any door
            close_case(app, session, case, by=session.get(Account, user.id), actor=user.email,
                       why=BY_THE_TEAM)
            number = case.number
    except case_flow.TransitionError as exc:
        return back(request, f"/cases/{number}", "error", str(exc))
    return back(request, f"/cases/{number}", "ok", f"{number} is closed.")


# --- quarantine and outbox ------------------------------------------------------------------


@router.get("/quarantine")
def quarantine_page(request: Request,
                    user: Annotated[WebUser, Depends(admin_page)]) -> Response:
    with web_app(request).sessions() as session:
        held = views.quarantine(session)
    return render_page(request, "quarantine.html.j2", user, held=held, nav="quarantine")


def _quarantine_action(request: Request, message_id: int, user: WebUser,
                       action: Callable[..., object], done: str) -> Response:
    """One admin action on a held message (workflow/quarantine.py), its outcome flashed."""
    try:
        with transaction(web_app(request).sessions) as session:
            action(session, message_id, actor=user.email)
    except quarantine.MessageNotFound as exc:
        raise HTTPException(404, "No such message.") from exc
    except quarantine.QuarantineError as exc:
        text = str(exc)  # capitalize() would lower-case the case number in it
        return back(request, "/quarantine", "error", text[:1].upper() + text[1:] + ".")
    return back(request, "/quarantine", "ok", done)


@router.post("/quarantine/{message_id:int}/reprocess")
def reprocess(request: Request, message_id: int,
              user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    return _quarantine_action(request, message_id, user, quarantine.reprocess,
                              f"Message {message_id} will be processed again.")


@router.post("/quarantine/{message_id:int}/release")
def release(request: Request, message_id: int,
            user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    return _quarantine_action(request, message_id, user, quarantine.release,
                              f"Message {message_id} is released: it will be processed as if "
                              "its sender were verified.")


@router.post("/quarantine/{message_id:int}/attach")
def attach(request: Request, message_id: int, user: Annotated[WebUser, Depends(admin_post)],
           case: Annotated[str, Form()] = "") -> Response:
    return _quarantine_action(
        request, message_id, user,
        lambda session, mid, actor: quarantine.attach(session, mid, case, actor),
        f"Message {message_id} will be added to {case.strip().upper()} as a message from its "
        "sender.")


@router.post("/quarantine/{message_id:int}/discard")
def discard(request: Request, message_id: int,
            user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    return _quarantine_action(request, message_id, user, quarantine.discard,
                              f"Message {message_id} was discarded (kept).")


@router.get("/outbox")
def outbox_page(request: Request, user: Annotated[WebUser, Depends(admin_page)]) -> Response:
    with web_app(request).sessions() as session:
        rows = views.outbox(session)
    return render_page(request, "outbox.html.j2", user, rows=rows, nav="outbox")


@router.post("/outbox/{outbound_id:int}/retry")
def retry(request: Request, outbound_id: int,
          user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    try:
        with transaction(web_app(request).sessions) as session:
            retry_now(session, outbound_id, actor=user.email)
    except LookupError as exc:
        raise HTTPException(404) from exc
    except ValueError as exc:
        return back(request, "/outbox", "error", str(exc))
    return back(request, "/outbox", "ok",
                f"Email {outbound_id} will be delivered at the next attempt.")


# --- health and metrics (no sign-in, no PHI) ------------------------------------------------


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
