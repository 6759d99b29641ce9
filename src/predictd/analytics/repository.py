"""All SQL that reads predictions for analytics. Works on SQLite and PostgreSQL alike.

Counts, averages, labels and latency come from ``prediction_rollups`` (per-minute sums), so a
query costs O(minutes in the window), not O(rows): windows therefore have one-minute
resolution (a minute is in when it starts at or after ``from``'s minute and before ``to``).
Only what needs single rows reads ``predictions``: the newest rows, and the agreement join
between shadow answers and the production answers they mirror.

Summaries and distributions describe what clients were answered, so shadow rows (never
returned) are left out unless a query asks for them, as ``compare`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import HISTOGRAM_COLUMNS, feedback
from predictd.db.tables import prediction_rollups as r
from predictd.db.tables import predictions as p

Interval = Literal["minute", "hour", "day"]
NO_LABEL = ""  # see recording/rollups.py: regression values and failures


@dataclass(frozen=True, slots=True)
class Window:
    """Which predictions a query covers."""

    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    version: int | None = None
    include_shadow: bool = False

    def rollups(self) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = []
        if self.start is not None:
            clauses.append(r.c.bucket >= self.start.replace(second=0, microsecond=0))
        if self.end is not None:
            clauses.append(r.c.bucket < self.end)
        if self.model is not None:
            clauses.append(r.c.model_name == self.model)
        if self.version is not None:
            clauses.append(r.c.model_version == self.version)
        if not self.include_shadow:
            clauses.append(r.c.variant != "shadow")
        return and_(true(), *clauses)


def _utc(value: Any) -> datetime | None:
    """A timestamp from either database: SQLite hands back text for computed columns."""
    if value is None:
        return None
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _histogram_sums() -> list[Any]:
    return [func.coalesce(func.sum(r.c[name]), 0) for name in HISTOGRAM_COLUMNS]


class AnalyticsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def totals(self, window: Window) -> dict[str, Any]:
        row = (
            await self.conn.execute(
                select(
                    func.coalesce(func.sum(r.c.count), 0),
                    func.coalesce(func.sum(r.c.errors), 0),
                    func.coalesce(func.sum(r.c.cache_hits), 0),
                    func.sum(r.c.confidence_sum),
                    func.coalesce(func.sum(r.c.confidence_count), 0),
                    func.sum(r.c.latency_sum),
                    func.min(r.c.first_ts),
                    func.max(r.c.last_ts),
                    *_histogram_sums(),
                ).where(window.rollups())
            )
        ).one()
        total, confidences = int(row[0]), int(row[4])
        return {
            "total": total,
            "errors": int(row[1]),
            "cache_hits": int(row[2]),
            "avg_confidence": float(row[3]) / confidences if confidences else None,
            "avg_latency_ms": float(row[5]) / total if total else None,
            "earliest": _utc(row[6]),
            "latest": _utc(row[7]),
            "histogram": [int(n) for n in row[8:]],
        }

    async def distribution(self, window: Window) -> list[tuple[Any, int]]:
        count = func.sum(r.c.count)
        rows = await self.conn.execute(
            select(r.c.label, count)
            .where(window.rollups(), r.c.label != NO_LABEL)
            .group_by(r.c.label)
            .order_by(count.desc(), r.c.label)
        )
        return [(orjson.loads(label), int(n)) for label, n in rows if n]

    async def variant_counts(self, window: Window) -> dict[str, int]:
        rows = await self.conn.execute(
            select(r.c.variant, func.sum(r.c.count)).where(window.rollups()).group_by(r.c.variant)
        )
        return {str(v): int(n) for v, n in rows if n}

    async def timeseries(self, window: Window, interval: Interval) -> list[dict[str, Any]]:
        period = self._period(interval).label("period")
        rows = await self.conn.execute(
            select(
                period,
                func.sum(r.c.count),
                func.sum(r.c.errors),
                func.sum(r.c.confidence_sum),
                func.sum(r.c.confidence_count),
                func.sum(r.c.latency_sum),
                *_histogram_sums(),
            )
            .where(window.rollups())
            .group_by(period)
            .order_by(period)
        )
        return [
            {
                "ts": _utc(row[0]),
                "count": int(row[1]),
                "errors": int(row[2]),
                "confidence_sum": float(row[3] or 0.0),
                "confidence_count": int(row[4]),
                "latency_sum": float(row[5] or 0.0),
                "histogram": [int(n) for n in row[6:]],
            }
            for row in rows
        ]

    def _period(self, interval: Interval) -> Any:
        if interval == "minute":
            return r.c.bucket
        if self.conn.dialect.name == "postgresql":
            return func.date_trunc(interval, r.c.bucket, literal_column("'UTC'"))
        fmt = "%Y-%m-%d %H:00:00" if interval == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(fmt, r.c.bucket)

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

    async def labelled(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> list[tuple[Any, Any, int]]:
        """(predicted, actual, count) for one version's answers that have feedback. A shadow
        answer is judged by the feedback on the production answer it mirrors (same input)."""
        own, mirrored = p.alias("own"), p.alias("mirrored")
        out: list[tuple[Any, Any, int]] = []
        for rows, key, shadow in ((own, own.c.id, False), (mirrored, mirrored.c.shadow_of, True)):
            clauses = [
                rows.c.model_name == name,
                rows.c.model_version == version,
                rows.c.status == "ok",
                (rows.c.variant == "shadow") if shadow else (rows.c.variant != "shadow"),
            ]
            if start is not None:
                clauses.append(rows.c.ts >= start)
            if end is not None:
                clauses.append(rows.c.ts < end)
            found = await self.conn.execute(
                select(rows.c.output, feedback.c.actual, func.count())
                .select_from(rows.join(feedback, feedback.c.prediction_id == key))
                .where(and_(*clauses))
                .group_by(rows.c.output, feedback.c.actual)
            )
            out += [(output, actual, int(n)) for output, actual, n in found]
        return out

    async def recent(
        self,
        window: Window,
        limit: int,
        before: tuple[datetime, UUID] | None,
        include_input: bool,
    ) -> list[dict[str, Any]]:
        """Newest first, a page at a time: ``before`` is the (ts, id) of the previous page's
        last row (keyset pagination: every page costs the same however deep it is)."""
        hidden = {"client_ip", "user_agent"} | (set() if include_input else {"input"})
        columns = [c for c in p.c if c.name not in hidden]
        clauses: list[ColumnElement[bool]] = []
        if window.start is not None:
            clauses.append(p.c.ts >= window.start)
        if window.end is not None:
            clauses.append(p.c.ts < window.end)
        if window.model is not None:
            clauses.append(p.c.model_name == window.model)
        if window.version is not None:
            clauses.append(p.c.model_version == window.version)
        if before is not None:
            ts, last_id = before
            clauses.append(or_(p.c.ts < ts, and_(p.c.ts == ts, p.c.id < last_id)))
        rows = await self.conn.execute(
            select(*columns)
            .where(and_(true(), *clauses))
            .order_by(p.c.ts.desc(), p.c.id.desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in rows]
