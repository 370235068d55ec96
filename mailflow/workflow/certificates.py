"""Providers' S/MIME certificates: added by an admin, uploaded by the provider, or offered by a
signed message; approved or revoked by an admin. Each change is audited.

Mail is encrypted only to an approved certificate (outbound/secure.py): one a provider
uploads or a message carries waits for an admin, who checks it is really theirs. A
certificate must name the account's address, be for email, carry an RSA key and chain to the
configured trust anchors now."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.crypto import openssl_cms
from mailflow.crypto.openssl_cms import CmsFailure
from mailflow.crypto.smime_certs import CertFacts, CertificateError, load_one, usable_for
from mailflow.db.models import Account, utcnow
from mailflow.db.smime_models import CertSource, CertStatus, ProviderCertificate


class CertError(Exception):
    """The certificate cannot be added or changed; the message says why, in plain words."""


def listed(session: Session, account: Account) -> list[ProviderCertificate]:
    return list(session.execute(
        select(ProviderCertificate).where(ProviderCertificate.account_id == account.id)
        .order_by(ProviderCertificate.added_at, ProviderCertificate.id)).scalars())


def _find(session: Session, account: Account, fingerprint: str) -> ProviderCertificate | None:
    wanted = fingerprint.strip().lower().replace(":", "")
    if len(wanted) < 8:
        raise CertError("give at least the first 8 characters of the fingerprint")
    found = [c for c in listed(session, account) if c.fingerprint.startswith(wanted)]
    if len(found) > 1:
        raise CertError(f"{fingerprint} names more than one certificate: give more of it")
    return found[0] if found else None


def add(app: App, session: Session, account: Account, data: bytes, source: str,
        actor: str) -> ProviderCertificate:
    """Add a certificate from a file (an admin's command, or the provider's upload). An
    admin's is approved at once; a provider's waits for an admin."""
    if app.smime is None:
        raise CertError("S/MIME is not enabled on this service ([smime] enabled)")
    try:
        cert = usable_for(load_one(data), account.email)
        openssl_cms.check_chain(cert.pem.encode(), app.smime.anchors_path, utcnow())
    except (CertificateError, CmsFailure) as exc:
        raise CertError(str(exc)) from None
    status = CertStatus.APPROVED if source == CertSource.ADMIN else CertStatus.PENDING
    return _record(session, account, cert, source, actor, status)


def offer(session: Session, account: Account, cert: CertFacts,
          message_id: int) -> ProviderCertificate | None:
    """A verified signed message carried this certificate: unless it is known already, it
    waits for an admin's approval. None when known (approved, pending or revoked)."""
    if any(c.fingerprint == cert.fingerprint for c in listed(session, account)):
        return None
    try:  # one mail could not be encrypted to (an EC key, not for email) is not offered
        usable_for(load_one(cert.pem.encode()), account.email)
    except CertificateError:
        return None
    return _record(session, account, cert, CertSource.MESSAGE, f"message {message_id}",
                   CertStatus.PENDING)


def _record(session: Session, account: Account, cert: CertFacts, source: str, actor: str,
            status: str) -> ProviderCertificate:
    row = next((c for c in listed(session, account) if c.fingerprint == cert.fingerprint),
               None)
    if row is not None and row.status == CertStatus.REVOKED and source != CertSource.ADMIN:
        raise CertError("this certificate was revoked by an admin and cannot be added again")
    if row is None:
        row = ProviderCertificate(account_id=account.id, fingerprint=cert.fingerprint,
                                  pem=cert.pem, email=account.email, subject=cert.subject[:500],
                                  issuer=cert.issuer_cn[:300], not_after=cert.not_after,
                                  source=source, status=status)
        session.add(row)
    elif status == CertStatus.APPROVED:
        row.status = status
    if status == CertStatus.APPROVED:
        row.decided_by, row.decided_at = actor, utcnow()
    session.flush()
    audit.record(session, "smime.cert.approved" if status == CertStatus.APPROVED
                 else "smime.cert.offered", actor=actor, entity="provider_certificate",
                 entity_id=row.id, detail={"account": account.id, "fingerprint": row.fingerprint,
                                           "source": source})
    return row


def decide(session: Session, account: Account, fingerprint: str, approve: bool,
           actor: str) -> ProviderCertificate:
    """An admin approves (mail is encrypted to it from now on) or revokes a certificate."""
    row = _find(session, account, fingerprint)
    if row is None:
        raise CertError(f"{account.email} has no certificate {fingerprint}")
    if approve and row.status == CertStatus.REVOKED:
        raise CertError("a revoked certificate stays revoked: add it again with --file")
    if approve and row.not_after < utcnow():
        raise CertError("the certificate has expired")
    row.status = CertStatus.APPROVED if approve else CertStatus.REVOKED
    row.decided_by, row.decided_at = actor, utcnow()
    audit.record(session, "smime.cert.approved" if approve else "smime.cert.revoked",
                 actor=actor, entity="provider_certificate", entity_id=row.id,
                 detail={"account": account.id, "fingerprint": row.fingerprint})
    return row


def in_use(row: ProviderCertificate, now: datetime) -> bool:
    return row.status == CertStatus.APPROVED and row.not_after > now
