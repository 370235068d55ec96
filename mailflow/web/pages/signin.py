"""Signing in and out: the password form, the authenticator code, sign-out.

Errors never say whether the email is known; the lockout slows repeated failures (security.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from mailflow.web.deps import current_user, posted_by, web_app, web_auth
from mailflow.web.pages.base import render_page
from mailflow.web.security import CODE_COOKIE, PRE_COOKIE, SESSION_COOKIE, SignIn, WebUser

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
