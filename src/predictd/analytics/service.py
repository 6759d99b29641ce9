"""Analytics over recorded predictions (reads the database, never the hot path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from predictd.analytics.repository import AnalyticsRepository
from predictd.db.engine import Database
from predictd.db.errors import translate_errors


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(self, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).summary(start, end)

    async def distribution(
        self, start: datetime | None, end: datetime | None
    ) -> list[tuple[Any, int]]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).distribution(start, end)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        async with translate_errors("reading analytics"), self.db.engine.connect() as conn:
            return await AnalyticsRepository(conn).recent(limit)
