"""Ground-truth feedback: stored as sent, joined to predictions only when performance is read.

Feedback for a prediction the database does not hold yet is kept, not refused: the recorder
ships predictions asynchronously (and spools them while the database is away), so an early
label is normal. It counts as soon as its prediction row arrives. Feedback whose prediction
never arrives is reported (``summary``) and purged with ``predictd db cleanup``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import feedback, predictions
from predictd.db.types import as_utc

Label = str | int | float | bool


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    prediction_id: UUID
    actual: Label


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    received: int
    replaced: list[UUID]  # already had feedback: the new answer replaced it
    unmatched: list[UUID]  # no prediction row yet: kept, counted once the row arrives


class FeedbackService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def submit(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        """Store every item in one transaction; a later item for the same id wins."""
        latest = {item.prediction_id: item.actual for item in items}
        ids = list(latest)
        now = datetime.now(UTC)
        async with translate_errors("storing feedback"), self.db.engine.begin() as conn:
            existing = await _present(conn, feedback.c.prediction_id, ids)
            rows = [
                {"prediction_id": i, "actual": actual, "received_at": now, "revisions": 1}
                for i, actual in latest.items()
            ]
            await conn.execute(self._upsert(), rows)
            known = await _present(conn, predictions.c.id, ids)
        return FeedbackOutcome(
            received=len(items),
            replaced=[i for i in ids if i in existing],
            unmatched=[i for i in ids if i not in known],
        )

    def _upsert(self) -> Any:
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        stmt = insert(feedback)
        return stmt.on_conflict_do_update(
            index_elements=[feedback.c.prediction_id],
            set_={
                "actual": stmt.excluded.actual,
                "received_at": stmt.excluded.received_at,
                "revisions": feedback.c.revisions + 1,
            },
        )

    async def summary(self) -> dict[str, Any]:
        """How much feedback there is, and how much still waits for its prediction."""
        joined = feedback.outerjoin(predictions, predictions.c.id == feedback.c.prediction_id)
        orphan = predictions.c.id.is_(None)
        async with translate_errors("reading feedback"), self.db.engine.connect() as conn:
            total, unmatched, oldest = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count().filter(orphan),
                        func.min(feedback.c.received_at).filter(orphan),
                    ).select_from(joined)
                )
            ).one()
        return {
            "total": int(total),
            "matched": int(total) - int(unmatched),
            "unmatched": int(unmatched),
            "oldest_unmatched_at": as_utc(oldest),
        }

    async def purge_unmatched(self, days: int) -> int:
        """Delete feedback older than ``days`` whose prediction never arrived."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        matched = select(predictions.c.id).where(predictions.c.id == feedback.c.prediction_id)
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                delete(feedback).where(feedback.c.received_at < cutoff, ~matched.exists())
            )
        return int(result.rowcount)

    async def purge_older(self, days: int) -> int:
        """Delete every answer received more than ``days`` ago (the retention of labels)."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self.db.engine.begin() as conn:
            result = await conn.execute(delete(feedback).where(feedback.c.received_at < cutoff))
        return int(result.rowcount)


async def _present(conn: AsyncConnection, column: Any, ids: list[UUID]) -> set[UUID]:
    found: set[UUID] = set()
    for start in range(0, len(ids), 500):  # keep IN lists well under SQLite's variable limit
        rows = await conn.execute(select(column).where(column.in_(ids[start : start + 500])))
        found.update(row[0] for row in rows)
    return found
