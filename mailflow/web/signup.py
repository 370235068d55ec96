"""Pages anyone may use before signing in: register as a provider, and "forgot password".

Both forms carry the pre-session CSRF token (security.py) and are rate-limited per client
address and per email address typed in (ratelimit.py). The sign-up form also carries a signed
token with the time it was shown: a form sent back faster than `min_fill_seconds`, or with the
hidden honeypot field filled in, is a bot's; the token cannot be forged or moved to another
browser. The answer to "forgot password" is the same page whether or not the address has an
account. What makes an account is workflow/registration.py, the same code as register@.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from mailflow.db.models import utcnow
from mailflow.db.session import transaction
from mailflow.parse.registration import REQUIRED, US_STATES, check_fields
from mailflow.web import ratelimit
from mailflow.web.deps import web_app, web_auth
from mailflow.web.pages.base import render_page
from mailflow.web.security import PRE_COOKIE
from mailflow.workflow.registration import forgot_password, register_provider

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

FIELDS = ("name", "credentials", "practice", "npi", "license_state", "phone", "email")
HONEYPOT = "website"  # the hidden field's name: a field bots like to fill
FORM_EXPIRED = "The form has expired. Reload the page and try again."
TOO_MANY = ("There have been too many requests from here or for this address. Please try "
            "again in an hour.")
NOT_A_PERSON = ("This form could not be accepted. Please reload the page and fill in only the "
                "fields you can see.")
TOO_FAST = ("That was quicker than a person can fill in the form. Please check the details "
            "and send it again.")


def _signer(request: Request) -> URLSafeTimedSerializer:
    # a key of its own, derived (HMAC) from the web key
    return URLSafeTimedSerializer(web_auth(request).csrf_for("sign-up form"),
                                  salt="mailflow web sign-up form")


def _with_pre_session(request: Request, template: str, status: int,
                      **context: Any) -> Response:
    auth = web_auth(request)
    cookie, csrf = auth.new_pre_session()
    nonce = auth.pre_session_nonce(cookie) or ""
    context.setdefault("form_token", _signer(request).dumps(_bind(nonce)))
    response = render_page(request, template, None, status, form_csrf=csrf, **context)
    response.set_cookie(PRE_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                        path="/", secure=web_app(request).config.web.secure_cookies)
    return response


def _bind(nonce: str) -> str:
    return hashlib.sha256(b"sign-up\x00" + nonce.encode()).hexdigest()[:32]


def _checked_peer(request: Request, csrf_token: str) -> tuple[str, str]:
    """The form must carry its pre-session's CSRF token: (the pre-session nonce, client IP)."""
    auth = web_auth(request)
    nonce = auth.pre_session_nonce(request.cookies.get(PRE_COOKIE))
    if nonce is None or not auth.csrf_ok("pre:" + nonce, csrf_token):
        raise HTTPException(403, FORM_EXPIRED)
    return nonce, request.client.host if request.client else ""


def _allowed(request: Request, form: str, peer: str, address: str) -> bool:
    limits = web_app(request).config.registration
    with transaction(web_app(request).sessions) as session:
        return ratelimit.take(session, [
            (f"{form}:ip", peer, limits.per_ip_per_hour),
            (f"{form}:address", address.strip().lower()[:320], limits.per_address_per_hour),
        ], utcnow())


# --- sign-up -------------------------------------------------------------------------------


def _signup_form(request: Request, values: dict[str, str], error: str = "",
                 status: int = 200) -> Response:
    return _with_pre_session(request, "register.html.j2", status, values=values, error=error,
                             honeypot=HONEYPOT, states=sorted(US_STATES))


@router.get("/register")
def signup_page(request: Request) -> Response:
    return _signup_form(request, dict.fromkeys(FIELDS, ""))


def _bot_check(request: Request, nonce: str, form_token: str, honeypot: str) -> str:
    """Why the form looks sent by a program ("" if it does not)."""
    limits = web_app(request).config.registration
    try:
        bound, shown = _signer(request).loads(form_token, max_age=int(limits.form_minutes * 60),
                                              return_timestamp=True)
    except SignatureExpired:
        return FORM_EXPIRED
    except BadSignature:
        return NOT_A_PERSON
    if bound != _bind(nonce) or honeypot:
        return NOT_A_PERSON
    if (utcnow() - shown).total_seconds() < limits.min_fill_seconds:
        return TOO_FAST
    return ""


@router.post("/register")
def signup(  # one parameter per field of the form
    request: Request,
    name: Annotated[str, Form()] = "", credentials: Annotated[str, Form()] = "",
    practice: Annotated[str, Form()] = "", npi: Annotated[str, Form()] = "",
    license_state: Annotated[str, Form()] = "", phone: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "", website: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
) -> Response:
    values = {"name": name, "credentials": credentials, "practice": practice, "npi": npi,
              "license_state": license_state, "phone": phone, "email": email}
    return _signup(request, {k: v[:1000] for k, v in values.items()}, website, form_token,
                   csrf_token)


def _signup(request: Request, values: dict[str, str], honeypot: str, form_token: str,
            csrf_token: str) -> Response:
    nonce, peer = _checked_peer(request, csrf_token)
    why = _bot_check(request, nonce, form_token, honeypot)
    if why:
        log.info("web sign-up refused: %s", "too fast" if why == TOO_FAST else "bot check")
        return _signup_form(request, values, why, 400)
    if not _allowed(request, "register", peer, values["email"]):
        log.info("web sign-up refused: rate limit")
        return _signup_form(request, values, TOO_MANY, 429)
    form = check_fields(values, REQUIRED + ("email",))
    if form.problems:
        return _signup_form(request, values, ". ".join(form.problems) + ".", 400)
    app = web_app(request)
    with transaction(app.sessions) as session:
        account = register_provider(session, form, actor=f"web:{peer}")
    log.info("web sign-up: %s", "pending account made" if account else "address already known")
    return RedirectResponse("/register/done", status_code=303)  # the same for a known address


@router.get("/register/done")
def signed_up(request: Request) -> Response:
    return render_page(request, "registered.html.j2", None)


# --- forgot password -----------------------------------------------------------------------


@router.get("/forgot-password")
def forgot_page(request: Request) -> Response:
    return _with_pre_session(request, "forgot_password.html.j2", 200, sent_to="", error="",
                             form_token="",
                             link_minutes=_link_minutes(request))


@router.post("/forgot-password")
def forgot(request: Request, email: Annotated[str, Form()] = "",
           csrf_token: Annotated[str, Form()] = "") -> Response:
    _nonce, peer = _checked_peer(request, csrf_token)
    email = " ".join(email.split())[:320]
    if not _allowed(request, "forgot", peer, email):
        return _with_pre_session(request, "forgot_password.html.j2", 429, sent_to="",
                                 error=TOO_MANY, form_token="",
                             link_minutes=_link_minutes(request))
    app = web_app(request)
    with transaction(app.sessions) as session:
        forgot_password(app, session, email)  # the page does not say which it was
    return _with_pre_session(request, "forgot_password.html.j2", 200, sent_to=email,
                             error="", form_token="",
                             link_minutes=_link_minutes(request))


def _link_minutes(request: Request) -> int:
    return int(web_app(request).config.registration.reset_link_minutes)
