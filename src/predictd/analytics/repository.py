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

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    Table,
    and_,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import CONFIDENCE_COLUMNS, HISTOGRAM_COLUMNS, feedback
from predictd.db.tables import prediction_rollups as r
from predictd.db.tables import prediction_rollups_hourly as h
from predictd.db.tables import predictions as p
from predictd.db.types import as_utc
from predictd.vocabulary import NO_LABEL, Window

Interval = Literal["minute", "hour", "day"]
SOURCE_COLUMNS: tuple[str, ...] = tuple(c.name for c in r.c)


def rollup_source(window: Window, *, minutes_only: bool = False) -> Subquery:
    """The rollup rows ``window`` covers: whole hours from the hourly table, and the minutes
    before the first and after the last whole hour from the minute table (a 30-day window
    reads ~720 hourly rows per version, variant and label, not 43,200)."""
    start = None if window.start is None else window.start.replace(second=0, microsecond=0)
    end = window.end
    first_hour = None if start is None else _ceil_hour(start)
    last_hour = None if end is None else end.replace(minute=0, second=0, microsecond=0)
    if minutes_only or (
        first_hour is not None and last_hour is not None and first_hour >= last_hour
    ):
        return _rows(r, _filters(window, r), start, end).subquery("rollups")
    parts = [_rows(h, _filters(window, h), first_hour, last_hour)]
    if start is not None and first_hour is not None and start < first_hour:
        parts.append(_rows(r, _filters(window, r), start, first_hour))
    if end is not None and last_hour is not None and last_hour < end:
        parts.append(_rows(r, _filters(window, r), last_hour, end))
    return union_all(*parts).subquery("rollups")


def _filters(window: Window, table: Table) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if window.model is not None:
        clauses.append(table.c.model_name == window.model)
    if window.version is not None:
        clauses.append(table.c.model_version == window.version)
    if not window.include_shadow:
        clauses.append(table.c.variant != "shadow")
    return clauses


def _ceil_hour(ts: datetime) -> datetime:
    hour = ts.replace(minute=0, second=0, microsecond=0)
    return hour if hour == ts else hour + timedelta(hours=1)


def _rows(
    table: Table,
    filters: list[ColumnElement[bool]],
    start: datetime | None,
    end: datetime | None,
) -> Select[Any]:
    clauses = list(filters)
    if start is not None:
        clauses.append(table.c.bucket >= start)
    if end is not None:
        clauses.append(table.c.bucket < end)
    return select(*(table.c[name] for name in SOURCE_COLUMNS)).where(and_(true(), *clauses))


def _histogram_sums(src: Subquery, names: tuple[str, ...] = HISTOGRAM_COLUMNS) -> list[Any]:
    return [func.coalesce(func.sum(src.c[name]), 0) for name in names]


class AnalyticsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def totals(self, window: Window) -> dict[str, Any]:
        src = rollup_source(window)
        row = (
            await self.conn.execute(
                select(
                    func.coalesce(func.sum(src.c.count), 0),
                    func.coalesce(func.sum(src.c.errors), 0),
                    func.coalesce(func.sum(src.c.cache_hits), 0),
                    func.sum(src.c.confidence_sum),
                    func.coalesce(func.sum(src.c.confidence_count), 0),
                    func.sum(src.c.latency_sum),
                    func.min(src.c.first_ts),
                    func.max(src.c.last_ts),
                    *_histogram_sums(src),
                )
            )
        ).one()
        total, confidences = int(row[0]), int(row[4])
        return {
            "total": total,
            "errors": int(row[1]),
            "cache_hits": int(row[2]),
            "avg_confidence": float(row[3]) / confidences if confidences else None,
            "avg_latency_ms": float(row[5]) / total if total else None,
            "earliest": as_utc(row[6]),
            "latest": as_utc(row[7]),
            "histogram": [int(n) for n in row[8:]],
        }

    async def distribution(self, window: Window) -> list[tuple[Any, int]]:
        src = rollup_source(window)
        count = func.sum(src.c.count)
        rows = await self.conn.execute(
            select(src.c.label, count)
            .where(src.c.label != NO_LABEL)
            .group_by(src.c.label)
            .order_by(count.desc(), src.c.label)
        )
        return [(orjson.loads(label), int(n)) for label, n in rows if n]

    async def confidence_bins(self, window: Window) -> list[int]:
        """Answers per confidence decile, [0, 0.1) ... [0.9, 1.0]."""
        src = rollup_source(window)
        row = (await self.conn.execute(select(*_histogram_sums(src, CONFIDENCE_COLUMNS)))).one()
        return [int(n) for n in row]

    async def variant_counts(self, window: Window) -> dict[str, int]:
        src = rollup_source(window)
        rows = await self.conn.execute(
            select(src.c.variant, func.sum(src.c.count)).group_by(src.c.variant)
        )
        return {str(v): int(n) for v, n in rows if n}

    async def timeseries(self, window: Window, interval: Interval) -> list[dict[str, Any]]:
        src = rollup_source(window, minutes_only=interval == "minute")
        period = self._period(src, interval).label("period")
        rows = await self.conn.execute(
            select(
                period,
                func.sum(src.c.count),
                func.sum(src.c.errors),
                func.sum(src.c.confidence_sum),
                func.sum(src.c.confidence_count),
                func.sum(src.c.latency_sum),
                *_histogram_sums(src),
            )
            .group_by(period)
            .order_by(period)
        )
        return [
            {
                "ts": as_utc(row[0]),
                "count": int(row[1]),
                "errors": int(row[2]),
                "confidence_sum": float(row[3] or 0.0),
                "confidence_count": int(row[4]),
                "latency_sum": float(row[5] or 0.0),
                "histogram": [int(n) for n in row[6:]],
            }
            for row in rows
        ]

    def _period(self, src: Subquery, interval: Interval) -> Any:
        if interval == "minute":
            return src.c.bucket
        if self.conn.dialect.name == "postgresql":
            return func.date_trunc(interval, src.c.bucket, literal_column("'UTC'"))
        fmt = "%Y-%m-%d %H:00:00" if interval == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(fmt, src.c.bucket)

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
