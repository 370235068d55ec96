"""A case's photos (EXIF-free copies only) and its consult report PDF, each read audited."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select

from mailflow import audit
from mailflow.db.models import CaseImage, Consult
from mailflow.db.session import transaction
from mailflow.store.blobs import BlobError
from mailflow.web import views
from mailflow.web.deps import page_user, web_app
from mailflow.web.pages.base import denied
from mailflow.web.security import WebUser

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


def _photo(request: Request, number: str, position: int, user: WebUser, copy: str) -> Response:
    app = web_app(request)
    refused = False
    sha, content_type = "", ""
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404)
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, f"photo {copy}")
            refused = True
        else:
            image = session.execute(
                select(CaseImage).where(CaseImage.case_id == case.id,
                                        CaseImage.position == position)
            ).scalar_one_or_none()
            if image is None:
                raise HTTPException(404)
            # only derived copies leave the store: both are EXIF-free (parse/images.py)
            sha = image.thumbnail_sha if copy == "thumb" else image.clean_sha
            content_type = "image/jpeg" if copy == "thumb" else image.clean_content_type
            audit.record(session, "photo.viewed", actor=user.email, case_id=case.id,
                         entity="case_image", entity_id=image.id,
                         detail={"position": position, "copy": copy, "via": "web"})
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    try:
        data = app.blobs.get(sha)
    except BlobError as exc:
        log.error("photo blob of case image could not be read: %s", exc)
        raise HTTPException(404) from exc
    return Response(data, media_type=content_type, headers={
        "Content-Disposition": "inline", "Cache-Control": "private, no-store"})


@router.get("/cases/{number}/photos/{position:int}/thumb")
def photo_thumb(request: Request, number: str, position: int,
                user: Annotated[WebUser, Depends(page_user)]) -> Response:
    return _photo(request, number, position, user, "thumb")


@router.get("/cases/{number}/photos/{position:int}/photo")
def photo_full(request: Request, number: str, position: int,
               user: Annotated[WebUser, Depends(page_user)]) -> Response:
    return _photo(request, number, position, user, "full")


@router.get("/cases/{number}/report.pdf")
def report_pdf(request: Request, number: str, user: Annotated[WebUser, Depends(page_user)],
               version: int | None = None) -> Response:
    app = web_app(request)
    refused = False
    sha = ""
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404)
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, "report")
            refused = True
        else:
            query = select(Consult).where(Consult.case_id == case.id, Consult.pdf_sha != "")
            if version is not None:
                query = query.where(Consult.version == version)
            consult = session.execute(
                query.order_by(Consult.version.desc()).limit(1)).scalar_one_or_none()
            if consult is None:
                raise HTTPException(404, f"{case.number} has no consult report yet.")
            sha = consult.pdf_sha
            audit.case_event(session, case, "report.read", actor=user.email,
                             detail={"version": consult.version, "via": "web"})
            number = case.number
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    data = app.blobs.get(sha)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{number}-consult.pdf"',
        "Cache-Control": "private, no-store"})
