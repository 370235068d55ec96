"""The phone page's uploads (static/upload.js): a photo is announced, then sent in pieces, each
answered with the bytes kept so far, so a dropped connection resumes where it stopped. Then
the page sends the finished photos (a form post), and /sent/<id> says what became of them.

JSON for the script, each call by the signed-in provider with the session's CSRF token in an
X-CSRF-Token header; the pieces themselves are workflow/uploads.py's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from mailflow.db.models import Account, Case, Role
from mailflow.db.session import transaction
from mailflow.web.deps import page_user, posted_by, web_app, web_auth
from mailflow.web.pages.base import render_page
from mailflow.web.pages.photos import open_link
from mailflow.web.security import WebUser
from mailflow.workflow import phone_cases, uploads
from mailflow.workflow.intake_cases import photo_link

router = APIRouter(include_in_schema=False)


def provider_call(request: Request, user: Annotated[WebUser, Depends(page_user)]) -> WebUser:
    """A signed-in provider, with this session's CSRF token in the X-CSRF-Token header."""
    if user.role != Role.PROVIDER:
        raise HTTPException(403, "Only providers send photos.")
    if not web_auth(request).csrf_ok(user.nonce, request.headers.get("x-csrf-token")):
        raise HTTPException(403, "The page has expired. Reload it and try again.")
    return user


Provider = Annotated[WebUser, Depends(provider_call)]


def _refused(exc: uploads.UploadRefused) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


def _progress(p: uploads.Progress, status: int = 200) -> JSONResponse:
    return JSONResponse({"id": p.id, "size": p.size, "received": p.received}, status_code=status)


class NewUpload(BaseModel):
    field: str = Field(max_length=40)
    name: str = Field("", max_length=255)
    type: str = Field("", max_length=100)
    size: int = Field(ge=0)
    case: str | None = Field(None, max_length=20)  # None: photos for a new case


@router.post("/uploads")
def start_upload(request: Request, body: NewUpload, user: Provider) -> Response:
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            account = session.get(Account, user.id)
            assert account is not None
            case_id = None
            if body.case is not None:
                case = session.execute(select(Case).where(Case.number == body.case)
                                       ).scalar_one_or_none()
                if case is None or case.provider_id != user.id:
                    raise HTTPException(404, "There is nothing here.")
                case_id = case.id
            started = uploads.start(app, session, account, case_id, body.field, body.name,
                                    body.type, body.size)
    except uploads.UploadRefused as exc:
        return _refused(exc)
    return JSONResponse({"id": started.id, "size": started.size, "received": 0,
                         "chunk": app.config.uploads.chunk_bytes}, status_code=201)


@router.get("/uploads/{upload_id}")
def upload_progress(request: Request, upload_id: str, user: Provider) -> Response:
    app = web_app(request)
    try:
        with app.sessions() as session:
            account = session.get(Account, user.id)
            assert account is not None
            return _progress(uploads.progress(session, account, upload_id))
    except uploads.UploadRefused as exc:
        return _refused(exc)


@router.put("/uploads/{upload_id}")
async def upload_piece(request: Request, upload_id: str, user: Provider) -> Response:
    app = web_app(request)
    limit = app.config.uploads.chunk_bytes
    try:
        offset = int(request.headers.get("upload-offset", ""))
        announced = int(request.headers.get("content-length", "0"))
    except ValueError:
        return JSONResponse({"detail": "Upload-Offset is missing."}, status_code=400)
    if announced > limit:
        return JSONResponse({"detail": "That piece is too large."}, status_code=413)
    data = bytearray()
    async for part in request.stream():  # never more than one piece in memory
        data += part
        if len(data) > limit:
            return JSONResponse({"detail": "That piece is too large."}, status_code=413)

    def keep() -> Response:
        try:
            with transaction(app.sessions) as session:
                account = session.get(Account, user.id)
                assert account is not None
                done = uploads.add_piece(app, session, account, upload_id, offset, bytes(data))
        except uploads.UploadRefused as exc:
            return _refused(exc)
        return _progress(done)

    return await run_in_threadpool(keep)


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


def _send(request: Request, user: WebUser, ids: list[str], case_number: str | None,
          fields: dict[str, str] | None) -> int:
    app = web_app(request)
    return phone_cases.send(app, user.id, ids, case_number=case_number, fields=fields,
                            peer=_peer(request), tls=request.url.scheme == "https")


@router.post("/photos/{token}/send")
def send_photos(request: Request, token: str, user: Annotated[WebUser, Depends(posted_by)],
                upload: Annotated[list[str] | None, Form()] = None) -> Response:
    link, case, refusal = open_link(request, token)
    if refusal is not None:
        return refusal
    assert link is not None and case is not None
    try:
        sent = _send(request, user, upload or [], case.number, None)
    except uploads.UploadRefused as exc:
        return render_page(request, "photos_refused.html.j2", user, 409,
                           title="The photos were not sent", text=str(exc),
                           again=f"/photos/{token}")
    return RedirectResponse(f"/sent/{sent}", status_code=303)


@router.get("/sent/{message_id}")
def sent(request: Request, message_id: int, user: Annotated[WebUser, Depends(page_user)]
         ) -> Response:
    """What became of what the page sent; the page looks again every few seconds until the
    worker has read it."""
    app = web_app(request)
    result: dict[str, Any] = phone_cases.outcome(app, user.id, message_id)
    if result["status"] == "unknown":
        raise HTTPException(404, "There is nothing here.")
    again = ""
    if result["status"] == "done" and not result["complete"]:
        with app.sessions() as session:
            case = session.execute(select(Case).where(Case.number == result["case"])
                                   ).scalar_one()
            account = session.get(Account, user.id)
            assert account is not None
            again = photo_link(app, case, account).removeprefix(app.config.web_url)
    return render_page(request, "photos_sent.html.j2", user, result=result, again=again)
