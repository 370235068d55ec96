"""The outbox: emails waiting or failed, and the admin's retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from mailflow.db.session import transaction
from mailflow.outbound.delivery import retry_now
from mailflow.web import views
from mailflow.web.deps import admin_page, admin_post, web_app
from mailflow.web.pages.base import back, render_page
from mailflow.web.security import WebUser

router = APIRouter(include_in_schema=False)


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
