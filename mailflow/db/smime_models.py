"""Providers' S/MIME certificates (Direct): mail to a provider with an approved, valid one is
signed and encrypted to it. Created by migration 0020. Certificates are public: no PHI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailflow.db.models import Account, Base, utcnow


class CertStatus:
    PENDING = "pending"  # offered by a signed message, waiting for an admin
    APPROVED = "approved"  # mail to the provider is encrypted to it
    REVOKED = "revoked"  # an admin withdrew it: never used again
    ALL = (PENDING, APPROVED, REVOKED)


class CertSource:
    UPLOAD = "upload"  # the provider, on their account page (an admin approves it)
    ADMIN = "admin"  # `mailflow users cert EMAIL --file`: approved as it is added
    MESSAGE = "message"  # the certificate a verified signed message carried


class ProviderCertificate(Base):
    __tablename__ = "provider_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the DER, hex
    pem: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(String(320))  # the address it names (the account's)
    subject: Mapped[str] = mapped_column(String(500), default="")
    issuer: Mapped[str] = mapped_column(String(300), default="")  # its issuer's common name
    not_after: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=CertStatus.PENDING)
    source: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str] = mapped_column(String(320), default="")
    decided_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship()

    __table_args__ = (UniqueConstraint("account_id", "fingerprint"),)
