"""Who may come in: the sign-in lockout's tables (trust/lockout.py: failure counters and the
addresses each login has signed in from) and the web's (per-account sign-in state, signed-in
sessions, rate-limit events). Declared here with the other models, so the schema is all in db/.

Part of Base.metadata (imported by the Alembic env), created by migrations 0005 and 0011. No
PHI: logins (account email addresses, or whatever a guesser typed), network addresses, account
ids, counts, times and a hash of each session's nonce.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailflow.db.models import Base, utcnow

LOGIN_CHARS = 320  # an email address's longest
ADDRESS_CHARS = 64  # an IPv6 /64 written out, with room


class SigninCounter(Base):
    """Failed sign-ins in one window, for one of three keys: a login from one address
    (`pair`), a login from everywhere (`login`, address ""), one address for any login
    (`address`, login ""). In the database, so every door process and a restart see the same
    counts."""

    __tablename__ = "signin_counters"
    __table_args__ = (
        UniqueConstraint("kind", "login", "address", name="uq_signin_counters_key"),
        Index("ix_signin_counters_window_start", "window_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    login: Mapped[str] = mapped_column(String(LOGIN_CHARS))
    address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class SigninAddress(Base):
    """An address a login signed in from (password, and the authenticator code where the
    account has one): during a lock on the login, sign-in from here still works."""

    __tablename__ = "signin_addresses"
    __table_args__ = (
        UniqueConstraint("login", "address", name="uq_signin_addresses_key"),
        Index("ix_signin_addresses_last_success_at", "last_success_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(LOGIN_CHARS))
    address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    last_success_at: Mapped[datetime]


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
    typed in (the rate limits), or a photo link that did not open, per address. In the
    database, like the lockout, so a restart does not reset them; rows older than the window
    are deleted as new ones come."""

    __tablename__ = "web_rate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))  # e.g. "register:ip", "forgot:address"
    key: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_web_rate_events_scope_key_at", "scope", "key", "at"),)
