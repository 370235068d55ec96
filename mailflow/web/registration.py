"""Registrations: admins approve or reject pending providers, and send a new set-password link
to an approved provider whose first one ran out; a provider sets a password from the one-time
link in the welcome (or "forgot password") email."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import Account, AccountStatus, Role, utcnow
from mailflow.db.session import ROW_LOCK, transaction
from mailflow.trust import tokens
from mailflow.web.certificates import waiting as waiting_certificates
from mailflow.web.deps import admin_page, admin_post, web_app, web_auth
from mailflow.web.pages.base import back, render_page
from mailflow.web.security import PRE_COOKIE, WebUser
from mailflow.workflow import accounts
from mailflow.workflow.registration import approve, reject, resend_link

router = APIRouter(include_in_schema=False)


@router.get("/registrations")
def registrations(request: Request, user: Annotated[WebUser, Depends(admin_page)]) -> Response:
    with web_app(request).sessions() as session:
        pending = session.execute(
            select(Account).where(Account.status == AccountStatus.PENDING)
            .order_by(Account.created_at)
        ).scalars().all()
        # approved, but the link to set a password was never used (expired, or lost)
        waiting = session.execute(
            select(Account).where(Account.status == AccountStatus.APPROVED,
                                  Account.password_hash.is_(None),
                                  Account.role == Role.PROVIDER)
            .order_by(Account.approved_at)
        ).scalars().all()
        certs = [{"id": c.id, "email": c.email, "issuer": c.issuer, "not_after": c.not_after,
                  "fingerprint": c.fingerprint, "source": c.source, "added_at": c.added_at}
                 for c in waiting_certificates(session)]
    return render_page(request, "registrations.html.j2", user, nav="registrations",
                       pending=pending, waiting=waiting, certificates=certs)


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise HTTPException(404, "No such registration.")
    return account


@router.post("/registrations/{account_id:int}/approve")
def approve_registration(request: Request, account_id: int,
                         user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    app = web_app(request)
    with transaction(app.sessions) as session:
        account = _account(session, account_id)
        if account.status == AccountStatus.APPROVED:
            return back(request, "/registrations", "ok",
                        f"{account.email} was already approved: nothing was sent again.")
        if account.status != AccountStatus.PENDING:
            return back(request, "/registrations", "error",
                        f"{account.email} is {account.status}, not waiting for approval.")
        approve(app, session, account.email, actor=user.email)
        email = account.email
    return back(request, "/registrations", "ok", f"{email} is approved and has been emailed.")


@router.post("/registrations/{account_id:int}/reject")
def reject_registration(request: Request, account_id: int,
                        user: Annotated[WebUser, Depends(admin_post)],
                        reason: Annotated[str, Form()] = "") -> Response:
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            email = reject(session, _account(session, account_id).email, user.email,
                           reason[:500]).email
    except accounts.AccountError as exc:
        return back(request, "/registrations", "error", _sentence(str(exc)))
    return back(request, "/registrations", "ok", f"The registration of {email} is rejected.")


@router.post("/registrations/{account_id:int}/resend-link")
def resend_registration_link(request: Request, account_id: int,
                             user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            email = resend_link(app, session, _account(session, account_id).email,
                                user.email).email
    except accounts.AccountError as exc:
        return back(request, "/registrations", "error", _sentence(str(exc)))
    return back(request, "/registrations", "ok",
                f"A new link to set the password has been emailed to {email}.")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _account_for(request: Request, token: str) -> Account:
    app = web_app(request)
    try:
        account_id = tokens.account_of(token)
    except tokens.TokenError as exc:
        raise HTTPException(404, str(exc)) from exc
    with app.sessions() as session:
        account = session.get(Account, account_id)
    if account is None or account.status != AccountStatus.APPROVED:
        raise HTTPException(404, "This link is not valid.")
    try:
        tokens.verify(app.keys.token_key, token, account.id, account.password_hash, utcnow())
    except tokens.TokenError as exc:
        raise HTTPException(410 if "expired" in str(exc) else 404, str(exc)[:1].upper()
                            + str(exc)[1:] + ".") from exc
    return account


def _form(request: Request, token: str, account: Account, error: str = "",
          status: int = 200) -> Response:
    auth = web_auth(request)
    cookie, csrf = auth.new_pre_session()
    response = render_page(request, "set_password.html.j2", None, status, form_csrf=csrf,
                           token=token, email=account.email, error=error,
                           min_length=accounts.MIN_PASSWORD_LENGTH)
    response.set_cookie(PRE_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                        path="/", secure=web_app(request).config.web.secure_cookies)
    return response


@router.get("/set-password/{token}")
def set_password_page(request: Request, token: str) -> Response:
    return _form(request, token, _account_for(request, token))


@router.post("/set-password/{token}")
def set_password(request: Request, token: str,
                 password: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = "",
                 csrf_token: Annotated[str, Form()] = "") -> Response:
    auth = web_auth(request)
    nonce = auth.pre_session_nonce(request.cookies.get(PRE_COOKIE))
    if nonce is None or not auth.csrf_ok("pre:" + nonce, csrf_token):
        raise HTTPException(403, "The form has expired. Reload the page and try again.")
    account = _account_for(request, token)
    if password != confirm:
        return _form(request, token, account, "The two passwords are not the same.", 400)
    try:
        new_hash = accounts.hash_password(password[:1024])
    except accounts.AccountError as exc:
        return _form(request, token, account, str(exc).capitalize() + ".", 400)
    app = web_app(request)
    with transaction(app.sessions) as session:
        row = session.get(Account, account.id, with_for_update=ROW_LOCK)
        # the link is one-time: it was signed over the hash we are about to replace
        if row is None or row.password_hash != account.password_hash:
            raise HTTPException(404, "This link was already used.")
        row.password_hash = new_hash
        audit.record(session, "account.password_set", actor=row.email, entity="account",
                     entity_id=row.id, detail={"via": "one-time link"})
    response = back(request, "/login", "ok", "Your password is set. Sign in with it here, "
                    "and use it in your mail program's outgoing (SMTP) server settings.")
    response.delete_cookie(PRE_COOKIE, path="/")
    return response

