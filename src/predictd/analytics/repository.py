"""All SQL that reads predictions for analytics. Works on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import predictions as p


def _window(start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = [p.c.status == "ok"]
    if start is not None:
        clauses.append(p.c.ts >= start)
    if end is not None:
        clauses.append(p.c.ts < end)
    return and_(*clauses)


class AnalyticsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def summary(self, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        where = _window(start, end)
        row = (
            await self.conn.execute(
                select(
                    func.count(),
                    func.avg(p.c.confidence),
                    func.avg(p.c.latency_ms),
                    func.min(p.c.ts),
                    func.max(p.c.ts),
                ).where(where)
            )
        ).one()
        total = int(row[0])
        p95 = None
        if total:
            # Portable percentile (nearest rank): SQLite has no percentile_cont.
            offset = max(0, int(total * 0.95 + 0.5) - 1)
            p95 = (
                await self.conn.execute(
                    select(p.c.latency_ms)
                    .where(where)
                    .order_by(p.c.latency_ms)
                    .offset(offset)
                    .limit(1)
                )
            ).scalar_one()
        return {
            "total": total,
            "avg_confidence": None if row[1] is None else float(row[1]),
            "avg_latency_ms": None if row[2] is None else float(row[2]),
            "p95_latency_ms": p95,
            "earliest": row[3],
            "latest": row[4],
        }

    async def distribution(
        self, start: datetime | None, end: datetime | None
    ) -> list[tuple[Any, int]]:
        label = p.c.output
        rows = await self.conn.execute(
            select(label, func.count())
            .where(_window(start, end))
            .group_by(label)
            .order_by(func.count().desc())
        )
        return [(r[0], int(r[1])) for r in rows]

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        columns = [c for c in p.c if c.name not in ("input", "client_ip", "user_agent")]
        rows = await self.conn.execute(
            select(*columns).order_by(p.c.ts.desc(), p.c.id.desc()).limit(limit)
        )
        return [dict(r._mapping) for r in rows]
