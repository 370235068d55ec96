"""The portal's "Start a new case": the emailed form's fields and the photo fields on one page.
What it sends becomes the email to cases@ the provider could have written (phone_cases.send),
so the case is opened, checked and acknowledged exactly as an emailed one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from mailflow.db.models import Role
from mailflow.outbound.form_guide import PHOTO_FIELDS, web_form
from mailflow.web.deps import page_user, posted_by, web_app
from mailflow.web.pages.base import render_page
from mailflow.web.security import WebUser
from mailflow.workflow import phone_cases, uploads

router = APIRouter(include_in_schema=False)
MAX_VALUE = 4000  # characters in one field: a long history fits, a pasted book does not


def _provider(user: WebUser) -> WebUser:
    if user.role != Role.PROVIDER:
        raise HTTPException(403, "Only providers start cases.")
    return user


def _page(request: Request, user: WebUser, values: dict[str, str], error: str = "",
          status: int = 200) -> Response:
    return render_page(request, "new_case.html.j2", user, status, form=web_form(),
                       values=values, fields=PHOTO_FIELDS, error=error, nav="home",
                       max_files=web_app(request).config.uploads.max_files,
                       chunk=web_app(request).config.uploads.chunk_bytes)


@router.get("/new-case")
def new_case_page(request: Request, user: Annotated[WebUser, Depends(page_user)]) -> Response:
    _provider(user)
    return _page(request, user, {f.key: f.default for f in web_form()})


@router.post("/new-case")
async def new_case(request: Request, user: Annotated[WebUser, Depends(posted_by)]) -> Response:
    _provider(user)
    form = await request.form()
    keys = {f.key for f in web_form()}
    values = {k: str(form.get(k, ""))[:MAX_VALUE] for k in keys}
    ids = [str(v) for v in form.getlist("upload")]

    try:
        sent = await run_in_threadpool(
            phone_cases.send, web_app(request), user.id, ids, None, values,
            request.client.host if request.client else "", request.url.scheme == "https")
    except uploads.UploadRefused as exc:
        return _page(request, user, values, str(exc), 409)
    return RedirectResponse(f"/sent/{sent}", status_code=303)
