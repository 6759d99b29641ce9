"""All SQL on feedback: upserts by prediction id, and the join that finds unmatched answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import feedback, predictions

IN_LIST = 500  # ids per IN list, well under SQLite's variable limit


class FeedbackRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def with_feedback(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` already have an answer."""
        return await self._present(feedback.c.prediction_id, ids)

    async def with_prediction(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` have their prediction row."""
        return await self._present(predictions.c.id, ids)

    async def _present(self, column: Any, ids: Sequence[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        for start in range(0, len(ids), IN_LIST):
            rows = await self.conn.execute(
                select(column).where(column.in_(ids[start : start + IN_LIST]))
            )
            found.update(row[0] for row in rows)
        return found

    async def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store each answer; a second answer for a prediction replaces the first and counts
        as a revision."""
        insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(feedback)
        upsert = stmt.on_conflict_do_update(
            index_elements=[feedback.c.prediction_id],
            set_={
                "actual": stmt.excluded.actual,
                "received_at": stmt.excluded.received_at,
                "revisions": feedback.c.revisions + 1,
            },
        )
        await self.conn.execute(upsert, list(rows))

    async def counts(self) -> tuple[int, int, Any]:
        """(answers, answers without their prediction, when the oldest of those came)."""
        joined = feedback.outerjoin(predictions, predictions.c.id == feedback.c.prediction_id)
        orphan = predictions.c.id.is_(None)
        total, unmatched, oldest = (
            await self.conn.execute(
                select(
                    func.count(),
                    func.count().filter(orphan),
                    func.min(feedback.c.received_at).filter(orphan),
                ).select_from(joined)
            )
        ).one()
        return int(total), int(unmatched), oldest

    async def purge_unmatched(self, cutoff: datetime) -> int:
        """Delete answers received before ``cutoff`` whose prediction never arrived."""
        matched = select(predictions.c.id).where(predictions.c.id == feedback.c.prediction_id)
        result = await self.conn.execute(
            delete(feedback).where(feedback.c.received_at < cutoff, ~matched.exists())
        )
        return int(result.rowcount)

    async def purge_older(self, cutoff: datetime) -> int:
        result = await self.conn.execute(delete(feedback).where(feedback.c.received_at < cutoff))
        return int(result.rowcount)
