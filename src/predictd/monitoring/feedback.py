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

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.types import as_utc
from predictd.monitoring.repository import FeedbackRepository
from predictd.observability import Metrics

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
    def __init__(self, db: Database, metrics: Metrics | None = None) -> None:
        self.db = db
        self.metrics = metrics

    async def submit(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        """Store every item in one transaction; a later item for the same id wins."""
        latest = {item.prediction_id: item.actual for item in items}
        ids = list(latest)
        now = datetime.now(UTC)
        async with translate_errors("storing feedback"), self.db.engine.begin() as conn:
            repo = FeedbackRepository(conn)
            existing = await repo.with_feedback(ids)
            rows = [
                {"prediction_id": i, "actual": actual, "received_at": now, "revisions": 1}
                for i, actual in latest.items()
            ]
            await repo.upsert(rows)
            known = await repo.with_prediction(ids)
        if self.metrics is not None:  # counted once stored
            self.metrics.feedback_received.inc(len(items))
            self.metrics.feedback_matched.inc(sum(i.prediction_id in known for i in items))
        return FeedbackOutcome(
            received=len(items),
            replaced=[i for i in ids if i in existing],
            unmatched=[i for i in ids if i not in known],
        )

    async def summary(self) -> dict[str, Any]:
        """How much feedback there is, and how much still waits for its prediction."""
        async with translate_errors("reading feedback"), self.db.engine.connect() as conn:
            total, unmatched, oldest = await FeedbackRepository(conn).counts()
        return {
            "total": total,
            "matched": total - unmatched,
            "unmatched": unmatched,
            "oldest_unmatched_at": as_utc(oldest),
        }

    async def purge_unmatched(self, days: int) -> int:
        """Delete feedback older than ``days`` whose prediction never arrived."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self.db.engine.begin() as conn:
            return await FeedbackRepository(conn).purge_unmatched(cutoff)

    async def purge_older(self, days: int) -> int:
        """Delete every answer received more than ``days`` ago (the retention of labels)."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self.db.engine.begin() as conn:
            return await FeedbackRepository(conn).purge_older(cutoff)
