"""Analytics over recorded predictions (reads the database, never the hot path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from predictd.analytics.repository import ANSWERED, AnalyticsRepository, window
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import predictions as p


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(self, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).summary(window(start, end, ANSWERED))

    async def distribution(
        self, start: datetime | None, end: datetime | None
    ) -> list[tuple[Any, int]]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).distribution(window(start, end, ANSWERED))

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).recent(limit)

    async def arm(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        """Everything recorded for one version of a model: counts by variant, labels,
        confidence and latency."""
        where = window(start, end, p.c.model_name == name, p.c.model_version == version)
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            repo = AnalyticsRepository(conn)
            return {
                "version": version,
                "variants": await repo.variant_counts(where),
                **await repo.summary(where),
                "labels": await repo.distribution(where),
            }

    async def agreement(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> tuple[int, int]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).agreement(name, version, start, end)
