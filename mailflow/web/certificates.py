"""S/MIME certificates on the web: a provider uploads their own on the account page (it waits
for an admin, who checks it is really theirs); admins approve or revoke the waiting ones on the
registrations page. The rules and the audit are workflow/certificates.py's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.exceptions import HTTPException
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mailflow.db.models import Account
from mailflow.db.session import transaction
from mailflow.db.smime_models import CertSource, CertStatus, ProviderCertificate
from mailflow.web.deps import admin_post, posted_by, web_app
from mailflow.web.pages.base import back
from mailflow.web.security import WebUser
from mailflow.workflow import certificates

router = APIRouter(include_in_schema=False)
MAX_CERTIFICATE_BYTES = 64 * 1024  # a certificate is a few kilobytes; a chain a few more


def own(session: Session, user: WebUser) -> list[ProviderCertificate]:
    """The signed-in person's certificates, for the account page."""
    account = session.get(Account, user.id)
    return certificates.listed(session, account) if account is not None else []


def waiting(session: Session) -> list[ProviderCertificate]:
    """Certificates waiting for an admin, for the registrations page."""
    return list(session.execute(
        select(ProviderCertificate).where(ProviderCertificate.status == CertStatus.PENDING)
        .order_by(ProviderCertificate.added_at)).scalars())


@router.post("/account/certificate")
async def upload(request: Request, user: Annotated[WebUser, Depends(posted_by)],
                 certificate: Annotated[UploadFile | None, File()] = None) -> Response:
    app = web_app(request)
    if app.smime is None:
        return back(request, "/account", "error", "Secure email is not set up on this service.")
    data = await certificate.read(MAX_CERTIFICATE_BYTES + 1) if certificate else b""
    if not data or len(data) > MAX_CERTIFICATE_BYTES:
        return back(request, "/account", "error",
                    "Choose your certificate file (.pem, .crt or .cer) to upload.")
    def add() -> bool:
        with transaction(app.sessions) as session:
            account = session.get(Account, user.id)
            assert account is not None
            row = certificates.add(app, session, account, data, CertSource.UPLOAD, user.email)
            return row.status == CertStatus.APPROVED

    try:
        # on a thread: the event loop (the SMTP door, every page) must not wait for the
        # database's write lock or for openssl checking the chain
        approved = await run_in_threadpool(add)
    except certificates.CertError as exc:
        return back(request, "/account", "error", f"That certificate cannot be used: {exc}.")
    if approved:
        return back(request, "/account", "ok", "That certificate is already approved.")
    return back(request, "/account", "ok", "Thank you. Your certificate is waiting for our "
                "team to approve it; after that, our emails to you are encrypted to it.")


@router.post("/certificates/{cert_id:int}/{decision}")
def decide(request: Request, cert_id: int, decision: str,
           user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    if decision not in ("approve", "revoke"):
        raise HTTPException(404, "No such action.")
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            row = session.get(ProviderCertificate, cert_id)
            if row is None:
                raise HTTPException(404, "No such certificate.")
            certificates.decide(session, row.account, row.fingerprint,
                                approve=decision == "approve", actor=user.email)
            email = row.email
    except certificates.CertError as exc:
        return back(request, "/registrations", "error", f"Nothing was changed: {exc}.")
    done = "approved: mail to them is encrypted to it" if decision == "approve" else "revoked"
    return back(request, "/registrations", "ok", f"The certificate of {email} is {done}.")
