"""Which outgoing mail is S/MIME protected: mail to an account with an approved certificate
that is valid now (workflow/certificates.py keeps them), when `[smime]` is enabled.

Protected mail carries what `[mail] phi_in_email = true` would (the report PDF inside), since
only the recipient can open it; everyone else's mail follows `phi_in_email`."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, utcnow
from mailflow.db.smime_models import CertStatus, ProviderCertificate


def recipient_certificate(app: App, session: Session, recipient: Account | None,
                          to: str) -> bytes | None:
    """The PEM certificate mail to this recipient is encrypted to, or None."""
    if app.smime is None:
        return None
    account_id = recipient.id if recipient is not None else session.execute(
        select(Account.id).where(func.lower(Account.email) == to.strip().lower())
    ).scalar_one_or_none()
    if account_id is None:
        return None
    pem = session.execute(
        select(ProviderCertificate.pem)
        .where(ProviderCertificate.account_id == account_id,
               ProviderCertificate.status == CertStatus.APPROVED,
               ProviderCertificate.not_after > utcnow())
        .order_by(ProviderCertificate.not_after.desc()).limit(1)
    ).scalar_one_or_none()
    return pem.encode("ascii") if pem else None
