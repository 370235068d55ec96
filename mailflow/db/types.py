"""Column types: UTC timestamps everywhere, and encrypted columns for PHI.

Encrypted columns are AES-256-GCM sealed with the column key (derived from the current master
key) and stored as base64 text; a value sealed under an older key still opens (crypto/keyset.py).
The keys are installed once per process by `install_keys` when the application opens; using a
PHI column before that is a programming error and fails loudly.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from mailflow.crypto.keyset import KeySet

_keys: KeySet | None = None


def install_keys(keys: KeySet) -> None:
    global _keys
    _keys = keys


def _keyset() -> KeySet:
    if _keys is None:
        raise RuntimeError("the column keys are not installed: open the application first")
    return _keys


def seal_column(plain: bytes) -> str:
    return base64.b64encode(_keyset().seal("column", plain)).decode("ascii")


def open_column(stored: str) -> bytes:
    return _keyset().open("column", base64.b64decode(stored))[0]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite too (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: mailflow stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EncryptedText(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return seal_column(value.encode("utf-8"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return open_column(value).decode("utf-8")


class EncryptedJSON(TypeDecorator[Any]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        plain = json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return seal_column(plain)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(open_column(value))
