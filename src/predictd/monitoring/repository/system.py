"""All SQL on system_metrics: samples in long format, read back newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import system_metrics


class SystemMetricsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.conn.execute(system_metrics.insert(), list(rows))

    async def history(
        self, name: str | None, start: datetime | None, end: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        t = system_metrics.c
        query = select(t.ts, t.name, t.value, t.labels).order_by(t.ts.desc(), t.id.desc())
        if name is not None:
            query = query.where(t.name == name)
        if start is not None:
            query = query.where(t.ts >= start)
        if end is not None:
            query = query.where(t.ts < end)
        return [dict(row._mapping) for row in await self.conn.execute(query.limit(limit))]

    async def purge(self, cutoff: datetime) -> int:
        result = await self.conn.execute(delete(system_metrics).where(system_metrics.c.ts < cutoff))
        return int(result.rowcount)
