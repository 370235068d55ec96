"""The phone page for one case, opened from the acknowledgement's link (/photos/<token>).

The link names a case and a provider, signed, with an expiry (trust/photo_links.py). It is
not enough on its own: the page opens for that provider signed in, or after their password
(the sign-in's own check, lockout and slow-down; with an authenticator, its code next). A
link that is expired, changed, or opened by another account gets a kind page saying what to
do, and an audit event; too many bad links from one address are refused for a while.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from mailflow import audit
from mailflow.db.models import Account, Case, CaseState, utcnow
from mailflow.db.session import transaction
from mailflow.outbound.form_guide import photo_fields
from mailflow.trust import photo_links
from mailflow.web import ratelimit
from mailflow.web.deps import current_user, web_app, web_auth
from mailflow.web.pages.base import render_page
from mailflow.web.pages.signin import (
    _cookie,
    _pre_form,
    _pre_form_checked,
    _signed_in,
    _slow_down,
)
from mailflow.web.security import CODE_COOKIE, SESSION_COOKIE, SignIn, WebUser
from mailflow.workflow.intake_cases import VIEW_PREFIX

router = APIRouter(include_in_schema=False)

WRONG_PASSWORD = ("That password did not work. After several failed tries, this is paused "
                  "for a while.")
# Cases that take photos from the page: until the consult (afterwards, a reply by email)
OPEN_STATES = (CaseState.INCOMPLETE, CaseState.SUBMITTED, CaseState.ASSIGNED,
               CaseState.NEEDS_INFO)
WHAT_TO_DO = {
    "expired": ("This link has expired",
                "Links to add photos work for a few days. Reply to the case's email with the "
                "photos attached. Our answer to that email has a new link."),
    "invalid": ("This link does not work",
                "It may be cut short or changed. Open it again from the case's email, or reply "
                "to that email with the photos attached."),
    "other-account": ("This link is for another account",
                      "You are signed in as someone else. Sign out, then open the link again "
                      "and enter the password of the provider who sent the case."),
    "closed": ("This case takes no more photos here",
               "The skin doctor has answered. To send more photos, reply to the case's email."),
    "too-many": ("Too many tries",
                 "Too many links that did not work came from here. Wait an hour and try again."),
}


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def refused(request: Request, why: str, token: str = "", user: WebUser | None = None,
            case: Case | None = None) -> Response:
    """The kind page, and the refusal in the audit log (no PHI: the reason and the address)."""
    app = web_app(request)
    peer = _client(request)
    with transaction(app.sessions) as session:
        detail: dict[str, Any] = {"why": why, "peer": peer, "via": "web"}
        actor = user.email if user else "anonymous"
        if case is not None:
            audit.case_event(session, case, "photos.link_refused", actor=actor, detail=detail)
        else:
            audit.record(session, "photos.link_refused", actor=actor, entity="photo_link",
                         entity_id=token[:16], detail=detail)
    title, text = WHAT_TO_DO[why]
    status = {"expired": 410, "too-many": 429, "other-account": 403, "closed": 409}.get(why, 400)
    return render_page(request, "photos_refused.html.j2", user, status, title=title, text=text)


def _bad_link_allowed(request: Request) -> bool:
    app = web_app(request)
    with transaction(app.sessions) as session:
        return ratelimit.take(session, [("photo-link", _client(request),
                                         app.config.signin.login_attempts)], utcnow())


def open_link(request: Request, token: str
              ) -> tuple[photo_links.PhotoLink | None, Case | None, Response | None]:
    """The link's case, or the refusal page to answer with."""
    app = web_app(request)
    user = current_user(request)
    try:
        link = photo_links.read(app.keys.token_key, token[:200], utcnow())
    except photo_links.LinkError as exc:
        if not _bad_link_allowed(request):
            return None, None, refused(request, "too-many", token, user)
        return None, None, refused(request, "expired" if exc.expired else "invalid", token, user)
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == link.case_number)
                               ).scalar_one_or_none()
        if case is not None:
            session.expunge(case)
    if case is None or case.provider_id != link.provider_id:
        return None, None, refused(request, "invalid", token, user)
    if user is not None and user.id != link.provider_id:
        return None, None, refused(request, "other-account", token, user, case)
    if case.state not in OPEN_STATES:
        return None, None, refused(request, "closed", token, user, case)
    return link, case, None


def _needed_views(case: Case) -> list[str]:
    return [m[len(VIEW_PREFIX):] for m in case.missing if m.startswith(VIEW_PREFIX)]


def _password_page(request: Request, token: str, case: Case, error: str = "",
                   status: int = 200) -> Response:
    return _pre_form(request, "photos_password.html.j2", status, token=token,
                     number=case.number, error=error)


@router.get("/photos/{token}")
def photos_page(request: Request, token: str) -> Response:
    link, case, refusal = open_link(request, token)
    if refusal is not None:
        return refusal
    assert link is not None and case is not None
    user = current_user(request)
    if user is None:
        # From a mail app the browser sends no SameSite=Strict cookie: one step on this site
        # first, so a provider already signed in here is not asked for the password again.
        if (request.headers.get("sec-fetch-site") == "cross-site"
                and SESSION_COOKIE not in request.cookies):
            return render_page(request, "photos_bounce.html.j2", None, target=f"/photos/{token}")
        return _password_page(request, token, case)
    fields = photo_fields(_needed_views(case))
    return render_page(request, "photos.html.j2", user, token=token, number=case.number,
                       fields=fields, complete=not case.missing,
                       max_files=web_app(request).config.uploads.max_files,
                       chunk=web_app(request).config.uploads.chunk_bytes)


@router.post("/photos/{token}")
async def photos_password(request: Request, token: str,
                          password: Annotated[str, Form()] = "",
                          csrf_token: Annotated[str, Form()] = "") -> Response:
    link, case, refusal = await run_in_threadpool(open_link, request, token)
    if refusal is not None:
        return refusal
    assert link is not None and case is not None
    peer = _pre_form_checked(request, csrf_token)
    slowed = await _slow_down(request, peer)
    app = web_app(request)

    def check() -> tuple[str, SignIn]:
        with app.sessions() as session:
            email = session.execute(select(Account.email).where(
                Account.id == link.provider_id)).scalar_one()
        return email, web_auth(request).sign_in(email, password[:1024], peer, slowed)

    _email, result = await run_in_threadpool(check)
    target = f"/photos/{token}"
    if result.code_cookie is not None:  # the authenticator's code next, then back here
        response = RedirectResponse(f"/login/code?next={quote(target, safe='')}",
                                    status_code=303)
        _cookie(request, response, CODE_COOKIE, result.code_cookie,
                int(app.config.web.code_minutes * 60))
        return response
    if result.session_cookie is None:
        return await run_in_threadpool(_password_page, request, token, case, WRONG_PASSWORD, 400)
    return _signed_in(request, result.session_cookie, target)
