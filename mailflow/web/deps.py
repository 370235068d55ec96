"""Request dependencies: who is signed in, which role a page needs, the CSRF check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request

from mailflow.app import App
from mailflow.db.models import Role
from mailflow.web.security import SESSION_COOKIE, WebAuth, WebUser


class NotSignedIn(Exception):
    """Raised by the page dependencies: the browser is sent to the sign-in page."""


class NeedsAuthenticator(Exception):
    """An admin page, on a site that requires TOTP of admins, by an admin without it: the
    browser is sent to the account page to set it up."""


def web_app(request: Request) -> App:
    app: App = request.app.state.app
    return app


def web_auth(request: Request) -> WebAuth:
    auth: WebAuth = request.app.state.auth
    return auth


def current_user(request: Request) -> WebUser | None:
    cached = getattr(request.state, "user", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    user = web_auth(request).user_for(request.cookies.get(SESSION_COOKIE))
    request.state.user = user
    return user


# Where an admin without the required authenticator may still go: to set it up, or leave.
SETUP_PATHS = ("/account", "/account/totp", "/logout")


def _needs_setup(request: Request, user: WebUser) -> bool:
    return (user.role == Role.ADMIN and not user.has_totp
            and web_app(request).config.web.require_totp_for_admins
            and request.url.path not in SETUP_PATHS)


def page_user(request: Request) -> WebUser:
    user = current_user(request)
    if user is None:
        raise NotSignedIn()
    if _needs_setup(request, user):
        raise NeedsAuthenticator()
    return user


def api_user(request: Request) -> WebUser:
    user = current_user(request)
    if user is None:
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Cookie"})
    if _needs_setup(request, user):
        raise HTTPException(403, "set up the authenticator step (/account) first")
    return user


def require_admin(user: WebUser) -> None:
    if user.role != Role.ADMIN:
        raise HTTPException(403, "This page is for administrators.")


def require_staff(user: WebUser) -> None:
    if user.role not in (Role.ADMIN, Role.DERMATOLOGIST):
        raise HTTPException(403, "This page is for administrators and dermatologists.")


def admin_page(user: Annotated[WebUser, Depends(page_user)]) -> WebUser:
    require_admin(user)
    return user


def admin_api(user: Annotated[WebUser, Depends(api_user)]) -> WebUser:
    require_admin(user)
    return user


def posted_by(request: Request, csrf_token: Annotated[str, Form()] = "") -> WebUser:
    """A signed-in user whose form carries this session's CSRF token: else 403."""
    user = page_user(request)
    if not web_auth(request).csrf_ok(user.nonce, csrf_token):
        raise HTTPException(403, "The form has expired or did not come from this site. "
                                 "Reload the page and try again.")
    return user


def admin_post(user: Annotated[WebUser, Depends(posted_by)]) -> WebUser:
    require_admin(user)
    return user
