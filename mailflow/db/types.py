"""Column types: UTC timestamps everywhere, and encrypted columns for PHI.

Encrypted columns are AES-256-GCM sealed with the column key (derived from the master key) and
stored as text. The key is installed once per process by `install_column_key` when the
application opens; using a PHI column before that is a programming error and fails loudly.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from mailflow.store.keys import seal, unseal

_column_key: bytes | None = None


def install_column_key(key: bytes) -> None:
    global _column_key
    _column_key = key


def _key() -> bytes:
    if _column_key is None:
        raise RuntimeError("the column key is not installed: open the application first")
    return _column_key


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
        return base64.b64encode(seal(_key(), value.encode("utf-8"))).decode("ascii")

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return unseal(_key(), base64.b64decode(value)).decode("utf-8")


class EncryptedJSON(TypeDecorator[Any]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        plain = json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return base64.b64encode(seal(_key(), plain)).decode("ascii")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(unseal(_key(), base64.b64decode(value)))
