"""All SQL of retraining: the labelled predictions of a model, the scheduler's lock and the
time of its last run per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import audit_log, feedback, predictions
from predictd.db.types import as_utc

# The variants that answered clients: a shadow row is the candidate's own output, and its
# feedback belongs to the production answer it mirrors.
ANSWERED = ("production", "canary")


@dataclass(frozen=True, slots=True)
class LabelledRow:
    ts: datetime
    input: Any  # as recorded: {"text"}, {"features"}, {"hmac_sha256"} or None
    actual: Any  # the feedback, never the model's own output


class RetrainingRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def labelled(
        self, model: str, start: datetime, end: datetime, limit: int
    ) -> Sequence[LabelledRow]:
        """The newest ``limit`` answered predictions of ``model`` (every version) in
        [start, end) that have feedback, oldest first."""
        p, f = predictions.c, feedback.c
        query = (
            select(p.ts, p.input, f.actual)
            .join(feedback, f.prediction_id == p.id)
            .where(
                p.model_name == model,
                p.variant.in_(ANSWERED),
                p.status == "ok",
                p.ts >= start,
                p.ts < end,
            )
            .order_by(p.ts.desc(), p.id.desc())
            .limit(limit)
        )
        rows = [LabelledRow(r.ts, r.input, r.actual) for r in await self.conn.execute(query)]
        rows.reverse()
        return rows

    async def last_run(self, action: str, model: str) -> datetime | None:
        """When ``action`` was last recorded in the audit log for ``model``."""
        a = audit_log.c
        query = select(func.max(a.ts)).where(a.action == action, a.target == model)
        return as_utc((await self.conn.execute(query)).scalar())

    async def try_lock(self, key: int) -> bool:
        """A PostgreSQL session advisory lock, held until ``unlock`` or the session ends."""
        return bool((await self.conn.execute(select(func.pg_try_advisory_lock(key)))).scalar())

    async def unlock(self, key: int) -> None:
        await self.conn.execute(select(func.pg_advisory_unlock(key)))
