"""All SQL of the performance pass: predictions joined to feedback and aggregated in the
database (a confusion matrix of counts, or sums of errors), confidence per predicted label from
the rollups, and the performance_metrics rows it stores."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Float, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import rollup_source
from predictd.db.tables import CONFIDENCE_COLUMNS, feedback, performance_metrics, predictions
from predictd.monitoring.repository.monitor import (
    Served,
    answered_rows,
    served_versions,
    stored_history,
)
from predictd.vocabulary import NO_LABEL, Window

p, f = predictions.c, feedback.c
LABELLED = predictions.join(feedback, f.prediction_id == p.id)

# (predicted label, confidence sum, answers with a confidence, answers per confidence decile)
LabelConfidenceRow = tuple[Any, float, int, list[int]]


class PerformanceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def served(self, window: Window) -> list[Served]:
        return await served_versions(self.conn, window)

    async def confusion(self, window: Window) -> list[tuple[Any, Any, int]]:
        """(predicted, actual, count) over the labelled answers."""
        rows = await self.conn.execute(
            select(p.output, f.actual, func.count())
            .select_from(LABELLED)
            .where(answered_rows(window))
            .group_by(p.output, f.actual)
        )
        return [(output, actual, int(n)) for output, actual, n in rows]

    async def regression_sums(self, window: Window) -> tuple[int, float, float, float, float]:
        """(labelled answers, sum |y - ŷ|, sum (y - ŷ)², sum y, sum y²), numeric pairs only."""
        y, yhat = self._numeric(f.actual), self._numeric(p.output)
        n, abs_err, sq_err, y_sum, y2_sum = (
            await self.conn.execute(
                select(
                    func.count(),
                    func.sum(func.abs(y - yhat)),
                    func.sum((y - yhat) * (y - yhat)),
                    func.sum(y),
                    func.sum(y * y),
                )
                .select_from(LABELLED)
                .where(answered_rows(window), y.is_not(None), yhat.is_not(None))
            )
        ).one()
        return (int(n), float(abs_err or 0), float(sq_err or 0), float(y_sum or 0),
                float(y2_sum or 0))  # fmt: skip

    def _numeric(self, column: Any) -> Any:
        """A JSON scalar as a float, in each database's words."""
        if self.conn.dialect.name == "postgresql":
            return cast(column.op("#>>")(literal_column("'{}'")), Float)
        return cast(func.json_extract(column, "$"), Float)

    async def answered(self, window: Window) -> int:
        src = rollup_source(window)
        total = (await self.conn.execute(select(func.sum(src.c.count)))).scalar()
        return int(total or 0)

    async def label_confidences(self, window: Window) -> list[LabelConfidenceRow]:
        """Per predicted label (regression values and failures left out), from the rollups."""
        src = rollup_source(window)
        rows = await self.conn.execute(
            select(
                src.c.label,
                func.coalesce(func.sum(src.c.confidence_sum), 0),
                func.coalesce(func.sum(src.c.confidence_count), 0),
                *(func.coalesce(func.sum(src.c[c]), 0) for c in CONFIDENCE_COLUMNS),
            )
            .where(src.c.label != NO_LABEL)
            .group_by(src.c.label)
        )
        return [
            (orjson.loads(row[0]), float(row[1]), int(row[2]), [int(n) for n in row[3:]])
            for row in rows
        ]

    async def add(self, row: dict[str, Any]) -> None:
        await self.conn.execute(performance_metrics.insert(), [row])

    async def history(
        self, model: str | None, version: int | None, limit: int
    ) -> list[dict[str, Any]]:
        return await stored_history(self.conn, performance_metrics, model, version, limit)
