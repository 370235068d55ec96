"""The web's own tables: per-account sign-in state and signed-in sessions.

Part of Base.metadata (imported by the Alembic env), created by migration 0005. Neither table
holds PHI: account ids, times and a hash of each session's nonce. Failed sign-ins are counted
by the shared lockout (mailflow/trust/lockout.py), not here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mailflow.db.models import Base, utcnow


class WebLogin(Base):
    """Per account: the last web sign-in, and the last authenticator time step used (a code
    is good once). Locked while a sign-in step uses it."""

    __tablename__ = "web_logins"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id"), primary_key=True, autoincrement=False
    )
    last_login_at: Mapped[datetime | None]
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # no replay


class WebSession(Base):
    """One signed-in browser. The cookie carries the nonce; only its hash is stored, so the
    table alone cannot be used to take over a session. Sign-out deletes the row."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class WebRateEvent(Base):
    """One sign-up or forgot-password post, counted per client address and per email address
    typed in (the rate limits). In the database, like the lockout, so a restart does not reset
    them; rows older than the window are deleted as new ones come."""

    __tablename__ = "web_rate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))  # e.g. "register:ip", "forgot:address"
    key: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_web_rate_events_scope_key_at", "scope", "key", "at"),)
