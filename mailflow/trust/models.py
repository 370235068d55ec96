"""The sign-in lockout's tables (mailflow/trust/lockout.py): failure counters and the
addresses each login has signed in from.

Part of Base.metadata (imported by the Alembic env), created by migration 0011. No PHI: logins
(account email addresses, or whatever a guesser typed), network addresses, counts and times.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailflow.db.models import Base

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
