"""The migrations build exactly the schema the models describe (on SQLite and PostgreSQL):
a model change without its migration would otherwise surface only on a deployed database."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import UniqueConstraint

from mailflow.app import App
from mailflow.db import access_models as _access_models  # noqa: F401  (sign-in tables)
from mailflow.db.models import Base


def _redundant(diff: Any) -> bool:
    """Differences that change nothing: APScheduler's own table beside ours, and a UNIQUE
    on a primary key (PostgreSQL folds it into the key's index; audit_head has one)."""
    if not isinstance(diff, tuple):
        return False
    if diff[0] == "remove_table":
        return True
    if diff[0] in ("add_constraint", "remove_constraint") and isinstance(diff[1],
                                                                          UniqueConstraint):
        table = Base.metadata.tables.get(diff[1].table.name)
        names = {c.name for c in diff[1].columns}
        return table is not None and names == {c.name for c in table.primary_key.columns}
    return False


def test_migrations_match_the_models(app: App) -> None:
    with app.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in differences if not _redundant(d)] == []
