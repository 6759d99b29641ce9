"""All SQL that reads predictions for analytics. Works on SQLite and PostgreSQL alike.

Summaries and distributions describe what clients were answered, so shadow rows (never
returned) are left out unless a query asks for them, as ``compare`` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import predictions as p


def window(
    start: datetime | None, end: datetime | None, *extra: ColumnElement[bool]
) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = [p.c.status == "ok", *extra]
    if start is not None:
        clauses.append(p.c.ts >= start)
    if end is not None:
        clauses.append(p.c.ts < end)
    return and_(*clauses)


ANSWERED = p.c.variant != "shadow"


class AnalyticsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def summary(self, where: ColumnElement[bool]) -> dict[str, Any]:
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

    async def distribution(self, where: ColumnElement[bool]) -> list[tuple[Any, int]]:
        label = p.c.output
        rows = await self.conn.execute(
            select(label, func.count()).where(where).group_by(label).order_by(func.count().desc())
        )
        return [(r[0], int(r[1])) for r in rows]

    async def variant_counts(self, where: ColumnElement[bool]) -> dict[str, int]:
        rows = await self.conn.execute(
            select(p.c.variant, func.count()).where(where).group_by(p.c.variant)
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def agreement(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> tuple[int, int]:
        """(shadowed inputs, inputs where the candidate gave production's label)."""
        shadow = p.alias("shadow")
        prod = p.alias("prod")
        clauses: list[ColumnElement[bool]] = [
            shadow.c.variant == "shadow",
            shadow.c.model_name == name,
            shadow.c.model_version == version,
            shadow.c.status == "ok",
            prod.c.status == "ok",
        ]
        if start is not None:
            clauses.append(shadow.c.ts >= start)
        if end is not None:
            clauses.append(shadow.c.ts < end)
        agreed = func.sum(func.cast(shadow.c.output == prod.c.output, p.c.model_version.type))
        row = (
            await self.conn.execute(
                select(func.count(), agreed)
                .select_from(shadow.join(prod, prod.c.id == shadow.c.shadow_of))
                .where(and_(*clauses))
            )
        ).one()
        return int(row[0]), int(row[1] or 0)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        columns = [c for c in p.c if c.name not in ("input", "client_ip", "user_agent")]
        rows = await self.conn.execute(
            select(*columns).order_by(p.c.ts.desc(), p.c.id.desc()).limit(limit)
        )
        return [dict(r._mapping) for r in rows]
