"""The SQL behind the monitor's Prometheus series: which versions are watched, their latest
stored performance row and drift report, the latest shadow agreements, and the agreement a
monitor pass measures. Every read is an indexed lookup of a few rows, so each process can
repeat it every few seconds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import AnalyticsRepository, rollup_source
from predictd.db.tables import drift_reports, model_versions, performance_metrics, system_metrics
from predictd.vocabulary import Window

AGREEMENT = "shadow_agreement"  # system_metrics.name of the agreement rows


class SeriesRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def ping(self) -> None:
        """One round trip, the cheapest proof that the database answers."""
        await self.conn.execute(text("SELECT 1"))

    async def watched_versions(self) -> list[tuple[str, int]]:
        """(name, version) of every production and staging version, the ones worth a series."""
        v = model_versions.c
        rows = await self.conn.execute(
            select(v.name, v.version)
            .where(v.stage.in_(("production", "staging")))
            .order_by(v.name, v.version)
        )
        return [(str(name), int(version)) for name, version in rows]

    async def _latest(self, table: Table, name: str, version: int, *columns: str) -> Any:
        t = table.c
        row = (
            await self.conn.execute(
                select(*(t[c] for c in columns))
                .where(t.model_name == name, t.model_version == version)
                .order_by(t.computed_at.desc(), t.id.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else tuple(row)

    async def latest_performance(self, name: str, version: int) -> tuple[Any, Any] | None:
        """(metrics, estimated) of the version's newest performance row."""
        found: tuple[Any, Any] | None = await self._latest(
            performance_metrics, name, version, "metrics", "estimated"
        )
        return found

    async def latest_drift(self, name: str, version: int) -> tuple[str, Any, Any] | None:
        """(status, score, features) of the version's newest drift report."""
        found: tuple[str, Any, Any] | None = await self._latest(
            drift_reports, name, version, "status", "score", "features"
        )
        return found

    async def agreements(self, since: datetime, limit: int) -> list[tuple[float, Any]]:
        """(rate, labels) of the agreement rows since ``since``, newest first."""
        t = system_metrics.c
        rows = await self.conn.execute(
            select(t.value, t.labels)
            .where(t.name == AGREEMENT, t.ts >= since)
            .order_by(t.ts.desc(), t.id.desc())
            .limit(limit)
        )
        return [(float(value), labels) for value, labels in rows]

    async def shadowed_versions(self, window: Window) -> list[tuple[str, int]]:
        """(name, version) of the versions that answered shadowed inputs in ``window``."""
        src = rollup_source(Window(window.start, window.end, window.model, include_shadow=True))
        rows = await self.conn.execute(
            select(src.c.model_name, src.c.model_version)
            .where(src.c.variant == "shadow")
            .distinct()
            .order_by(src.c.model_name, src.c.model_version)
        )
        return [(str(name), int(version)) for name, version in rows]

    async def agreement(self, name: str, version: int, window: Window) -> tuple[int, int]:
        """(shadowed inputs, inputs where the candidate gave production's label)."""
        return await AnalyticsRepository(self.conn).agreement(
            name, version, window.start, window.end
        )
