"""Alembic environment: runs on the connection predictd hands it (see db/migrate.py)."""

from __future__ import annotations

from alembic import context

from predictd.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `predictd db upgrade`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
