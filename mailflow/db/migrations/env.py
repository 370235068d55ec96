"""Alembic environment: runs on the connection handed over by mailflow.db.session.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mailflow.db import access_models as _access_models  # noqa: F401  (sign-in tables)
from mailflow.db.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic revision --autogenerate` from a developer's shell
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
