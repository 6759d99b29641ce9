"""Alembic owns the schema: one head, up -> down -> up on both databases, no drift."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import metadata
from predictd.settings import Settings

TABLES = {
    "predictions",
    "model_versions",
    "prediction_rollups",
    "prediction_rollups_hourly",
    "feedback",
    "performance_metrics",
    "system_metrics",
    "alerts",
    "agent_actions",
    "drift_reports",
    "api_keys",
    "audit_log",
    "schedules",
}


async def partitions(db: Database) -> set[str]:
    """The partitions of `predictions` on PostgreSQL (tables of their own to the inspector)."""
    if db.dialect != "postgresql":
        return set()
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass('predictions')"
            )
        )
        return {row[0] for row in rows}


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names) - {"alembic_version"} - await partitions(db)


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1


async def test_up_down_up_and_models_match(db_url: str, tmp_path: Path) -> None:
    db = Database(Settings(database_url=db_url).database)
    try:
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert await tables(db) == TABLES

        if db.dialect == "postgresql":
            assert {"predictions_default"} < await partitions(db)
        skip = await partitions(db)
        options = {"include_name": lambda name, kind, _: not (kind == "table" and name in skip)}
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts=options), metadata)
            )
        assert diff == []

        await migrate.downgrade(db, "base")
        assert await migrate.current_revision(db) is None
        assert await tables(db) == set()

        await migrate.upgrade(db)
        assert await tables(db) == TABLES
    finally:
        await db.dispose()
