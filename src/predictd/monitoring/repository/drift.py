"""All SQL of the drift pass. The database does the counting: each numeric feature (or a text
model's input length) is counted into the reference's quantile bins by one GROUP BY over the
window; on PostgreSQL one scan counts every feature at once. Raw values are read only for the
small references a Kolmogorov-Smirnov test needs, and then only the most recent of them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, case, cast, func, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import AnalyticsRepository
from predictd.db.tables import drift_reports
from predictd.db.tables import predictions as predictions_table
from predictd.monitoring.repository.monitor import (
    Served,
    answered_rows,
    served_versions,
    stored_history,
)
from predictd.vocabulary import Window

p = predictions_table.c
TEXT_LENGTH = "text_length"
MISSING = -1  # the bin of a row without the feature
HASH_MASK = 0x7FFF_FFFF


@dataclass(frozen=True, slots=True)
class Feature:
    """A numeric input and its reference: ``name`` is a feature name or ``text_length``."""

    name: str
    reference: Mapping[str, Any]

    @property
    def edges(self) -> list[float]:
        return [float(e) for e in self.reference.get("edges", [])]

    def value(self) -> ColumnElement[Any]:
        if self.name == TEXT_LENGTH:
            length: ColumnElement[Any] = func.length(p.input["text"].as_string())
            return length
        number: ColumnElement[Any] = p.input[("features", self.name)].as_float()
        return number

    def bucket(self, dialect: str) -> ColumnElement[int]:
        """The reference bin a row falls in (bins are closed below, like numpy's
        searchsorted(side="right")), or MISSING. PostgreSQL's width_bucket reads the value
        once; elsewhere a CASE compares it with each edge."""
        value = self.value()
        if dialect == "postgresql" and self.edges:
            bucket: ColumnElement[int] = func.width_bucket(value, postgresql.array(self.edges))
            return func.coalesce(bucket, MISSING)
        whens: list[tuple[ColumnElement[bool], int]] = [(value.is_(None), MISSING)]
        whens += [(value < edge, i) for i, edge in enumerate(self.edges)]
        return case(*whens, else_=len(self.edges))


def _sampled(fraction: float) -> ColumnElement[bool]:
    """A fixed pseudo-random share of rows, chosen by a hash of the id: the same rows each
    run, and parallel-safe (random() would keep the scan on one core)."""
    bucket = func.hashtext(cast(p.id, Text)).op("&")(HASH_MASK)
    return bucket < int(fraction * (HASH_MASK + 1))


class DriftRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.analytics = AnalyticsRepository(conn)

    @property
    def can_sample(self) -> bool:
        """Whether ``bin_counts`` can count a sample of rows (PostgreSQL) or counts them all."""
        return self.conn.dialect.name == "postgresql"

    async def served(self, window: Window) -> list[Served]:
        return await served_versions(self.conn, window)

    async def answered(self, window: Window) -> int:
        return int((await self.analytics.totals(window))["total"])

    async def predicted_labels(self, window: Window) -> list[tuple[Any, int]]:
        return await self.analytics.distribution(window)

    async def confidence_bins(self, window: Window) -> list[int]:
        return await self.analytics.confidence_bins(window)

    async def bin_counts(
        self, features: list[Feature], window: Window, fraction: float = 1.0
    ) -> dict[str, list[int]]:
        """Rows per reference bin for each feature.

        PostgreSQL reads each value once, in one scan: every row becomes an array of bin
        numbers, unnested and counted (parallel-safe; GROUPING SETS would sort once per
        feature). With ``fraction`` < 1 it counts a pseudo-random sample of rows instead:
        reading a JSON value costs ~0.1-0.3 µs, so a 30-feature model at a million rows would
        otherwise take seconds. SQLite (small by nature) runs one exact GROUP BY per feature."""
        where = answered_rows(window)
        counts = {f.name: [0] * (len(f.edges) + 1) for f in features}
        buckets = [f.bucket(self.conn.dialect.name) for f in features]
        if self.conn.dialect.name == "postgresql":
            sampled = where if fraction >= 1 else and_(where, _sampled(fraction))
            binned = (
                select(postgresql.array(buckets).label("bins")).where(sampled).subquery("binned")
            )
            each = (
                func.unnest(binned.c.bins)
                .table_valued("bin", with_ordinality="feature")
                .render_derived()
            )
            rows = await self.conn.execute(
                select(each.c.feature, each.c.bin, func.count())
                .select_from(binned)
                .join(each, true())
                .group_by(each.c.feature, each.c.bin)
            )
            for position, value, n in rows:
                if value != MISSING:
                    counts[features[int(position) - 1].name][int(value)] += int(n)
            return counts
        for feature, bucket in zip(features, buckets, strict=True):
            result = await self.conn.execute(
                select(bucket, func.count()).where(where).group_by(bucket)
            )
            for row in result:
                if row[0] != MISSING:
                    counts[feature.name][int(row[0])] += int(row[1])
        return counts

    async def samples(
        self, features: list[Feature], window: Window, limit: int
    ) -> dict[str, list[float]]:
        """The most recent ``limit`` finite raw values of each feature."""
        rows = await self.conn.execute(
            select(*(f.value() for f in features))
            .where(answered_rows(window))
            .order_by(p.ts.desc())
            .limit(limit)
        )
        columns = list(zip(*rows, strict=True)) or [() for _ in features]
        return {
            f.name: [float(v) for v in column if v is not None and math.isfinite(float(v))]
            for f, column in zip(features, columns, strict=True)
        }

    async def texts(self, window: Window, limit: int) -> list[str]:
        """The most recent ``limit`` non-empty input texts."""
        rows = await self.conn.execute(
            select(p.input["text"].as_string())
            .where(answered_rows(window))
            .order_by(p.ts.desc())
            .limit(limit)
        )  # fmt: skip
        return [text for (text,) in rows if text]

    async def add(self, report: dict[str, Any]) -> None:
        await self.conn.execute(drift_reports.insert(), [report])

    async def history(
        self, model: str | None, version: int | None, limit: int
    ) -> list[dict[str, Any]]:
        return await stored_history(self.conn, drift_reports, model, version, limit)
