"""What a monitor pass reads about the registry, the rows a pass stored, and the pass lock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import rollup_source
from predictd.db.tables import model_versions, predictions
from predictd.vocabulary import Window

Served = tuple[str, int, str, dict[str, Any] | None]  # name, version, task, reference_profile


def answered_rows(window: Window) -> ColumnElement[bool]:
    """The window's answered predictions as raw rows, for what the rollups cannot say (inputs,
    the join to feedback); shadow answers only when the window includes them."""
    p = predictions.c
    clauses: list[ColumnElement[bool]] = []
    if window.model is not None:
        clauses.append(p.model_name == window.model)
    if window.version is not None:
        clauses.append(p.model_version == window.version)
    clauses.append(p.status == "ok")
    if not window.include_shadow:
        clauses.append(p.variant != "shadow")
    if window.start is not None:
        clauses.append(p.ts >= window.start)
    if window.end is not None:
        clauses.append(p.ts < window.end)
    return and_(*clauses)


async def served_versions(conn: AsyncConnection, window: Window) -> list[Served]:
    """Registry rows (name, version, task, reference_profile) of the versions the rollups say
    answered in ``window``, in name and version order."""
    src = rollup_source(window)
    served = select(src.c.model_name, src.c.model_version).distinct().subquery("served")
    v = model_versions.c
    rows = await conn.execute(
        select(v.name, v.version, v.task, v.reference_profile)
        .join(served, and_(served.c.model_name == v.name, served.c.model_version == v.version))
        .order_by(v.name, v.version)
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def stored_history(
    conn: AsyncConnection, table: Table, model: str | None, version: int | None, limit: int
) -> list[dict[str, Any]]:
    """A pass's stored rows, newest first, for one model (and version) or all."""
    t = table.c
    query = select(table).order_by(t.computed_at.desc(), t.id.desc())
    if model is not None:
        query = query.where(t.model_name == model)
    if version is not None:
        query = query.where(t.model_version == version)
    return [dict(row._mapping) for row in await conn.execute(query.limit(limit))]


class MonitorRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def training_accuracy(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], float]:
        """The accuracy each version was registered with, where it was."""
        v = model_versions.c
        rows = await self.conn.execute(
            select(v.name, v.version, v.metrics).where(tuple_(v.name, v.version).in_(keys))
        )
        return {
            (name, version): float(metrics["accuracy"])
            for name, version, metrics in rows
            if isinstance(metrics, dict) and isinstance(metrics.get("accuracy"), int | float)
        }

    async def try_lock(self, key: int) -> bool:
        """A PostgreSQL session advisory lock, held until ``unlock`` or the session ends."""
        return bool((await self.conn.execute(select(func.pg_try_advisory_lock(key)))).scalar())

    async def unlock(self, key: int) -> None:
        await self.conn.execute(select(func.pg_advisory_unlock(key)))
