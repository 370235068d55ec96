"""The quarantine: held messages, and the admin's actions on one (workflow/quarantine.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import admin_page, admin_post, web_app
from mailflow.web.pages.base import back, render_page
from mailflow.web.security import WebUser
from mailflow.workflow import quarantine

router = APIRouter(include_in_schema=False)


@router.get("/quarantine")
def quarantine_page(request: Request,
                    user: Annotated[WebUser, Depends(admin_page)]) -> Response:
    with web_app(request).sessions() as session:
        held = views.quarantine(session)
    return render_page(request, "quarantine.html.j2", user, held=held, nav="quarantine",
                       releasable=quarantine.RELEASABLE,
                       not_attachable=quarantine.NOT_ATTACHABLE)


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
