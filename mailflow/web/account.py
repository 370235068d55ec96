"""The signed-in person's own account page: turning the authenticator (TOTP) step on and off.

Setting it up shows a fresh secret as a QR code (segno, inline SVG: nothing leaves the
server) and as text; it is saved only once a code from the app proves the app has it. The
secret travels in the confirm form signed and bound to this session, never stored half-done.
"""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from mailflow.trust import totp
from mailflow.web.certificates import own
from mailflow.web.deps import page_user, posted_by, web_app, web_auth
from mailflow.web.pages.base import back, render_page
from mailflow.web.security import WebUser

router = APIRouter(include_in_schema=False)


@router.get("/account")
def account_page(request: Request, user: Annotated[WebUser, Depends(page_user)]) -> Response:
    app = web_app(request)
    context: dict[str, object] = {"has_totp": user.has_totp, "nav": "account",
                                  "required": _required(request, user),
                                  "smime": app.smime is not None}
    if app.smime is not None:
        with app.sessions() as session:
            context["certificates"] = [
                {"fingerprint": c.fingerprint, "status": c.status, "issuer": c.issuer,
                 "not_after": c.not_after, "source": c.source} for c in own(session, user)]
    if not user.has_totp:
        secret = totp.new_secret()
        uri = totp.provisioning_uri(secret, user.email, web_app(request).config.mail.domain)
        context.update(
            enrol=web_auth(request).enrolment_token(user, secret),
            key=totp.grouped(secret),
            qr=Markup(segno.make(uri, error="m").svg_inline(scale=4, border=2)),
        )
    return render_page(request, "account.html.j2", user, **context)


@router.post("/account/totp")
def turn_on(request: Request, user: Annotated[WebUser, Depends(posted_by)],
            enrol: Annotated[str, Form()] = "", code: Annotated[str, Form()] = "") -> Response:
    auth = web_auth(request)
    secret = auth.enrolment_secret(user, enrol)
    if secret is None:
        return back(request, "/account", "error",
                    "That set-up form has expired. Scan the new code below and try again.")
    if not auth.set_totp(user, secret, code):
        return back(request, "/account", "error",
                    "That code did not match the new key: nothing was changed. Scan the new "
                    "code below (the one before is void) and type what the app shows.")
    return back(request, "/", "ok", "The authenticator step is on: from your next sign-in, "
                "mailflow asks for its code after your password.")


@router.post("/account/totp/off")
def turn_off(request: Request, user: Annotated[WebUser, Depends(posted_by)],
             code: Annotated[str, Form()] = "") -> Response:
    if _required(request, user):
        return back(request, "/account", "error",
                    "This site requires the authenticator step for administrators.")
    peer = request.client.host if request.client else ""
    if not web_auth(request).set_totp(user, None, code, peer):
        return back(request, "/account", "error",
                    "That code did not match: the authenticator step is still on.")
    return back(request, "/account", "ok", "The authenticator step is off.")


def _required(request: Request, user: WebUser) -> bool:
    return bool(web_app(request).config.web.require_totp_for_admins and user.is_admin)
