"""Queries the monitor's passes share: which versions answered in a window, and the newest
rows a pass stored (performance_metrics, drift_reports)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Table, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import rollup_source
from predictd.db.tables import model_versions
from predictd.vocabulary import Window

Served = tuple[str, int, str, dict[str, Any] | None]  # name, version, task, reference_profile


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


def newest(table: Table, model: str | None, version: int | None, limit: int) -> Select[Any]:
    """A pass's stored rows, newest first, for one model (and version) or all."""
    t = table.c
    query = select(table).order_by(t.computed_at.desc(), t.id.desc())
    if model is not None:
        query = query.where(t.model_name == model)
    if version is not None:
        query = query.where(t.model_version == version)
    return query.limit(limit)
