"""Drift runs: a version's recent inputs and answers against its reference profile.

The database does the counting. Each numeric feature (or a text model's input length) is
counted into the reference's quantile bins by one GROUP BY over the window, so a million rows
come back as a few hundred counts; on PostgreSQL one scan counts every feature at once
(GROUPING SETS). Only when the reference is small enough for a Kolmogorov-Smirnov test are raw
values read, and then only the most recent ``drift_sample`` of them. The model's answers come
from the rollups: predicted-label counts and confidence deciles.

A window with too few answered predictions gets a report that says so, never a verdict.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, case, cast, func, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.analytics.repository import AnalyticsRepository, Window
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import CONFIDENCE_BINS, drift_reports
from predictd.db.tables import predictions as predictions_table
from predictd.inference.runtime import TextVocabulary
from predictd.monitoring.drift_stats import (
    FeatureDrift,
    Thresholds,
    binned_drift,
    categorical_drift,
    numeric_drift,
)
from predictd.monitoring.labels import label_key
from predictd.monitoring.profile import OOV, token_counts
from predictd.monitoring.stored import newest, served_versions
from predictd.settings import MonitoringSettings

log = logging.getLogger("predictd.monitor")

# (model name, version) -> the text model's tokenizer and vocabulary (ModelRegistry.vocabulary)
Vocabularies = Callable[[str, int], Awaitable[TextVocabulary | None]]

p = predictions_table.c
TEXT_LENGTH = "text_length"
MISSING = -1  # the bin of a row without the feature
HASH_MASK = 0x7FFF_FFFF
CONFIDENCE_CENTRES = [(i + 0.5) / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS)]


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


def _features(profile: Mapping[str, Any]) -> list[Feature]:
    if isinstance(profile.get(TEXT_LENGTH), Mapping):
        return [Feature(TEXT_LENGTH, profile[TEXT_LENGTH])]
    features = profile.get("features")
    if not isinstance(features, Mapping):
        return []
    return [Feature(name, ref) for name, ref in sorted(features.items()) if ref.get("count")]


def _result(drift: FeatureDrift, rows: int) -> dict[str, Any]:
    return {"rows": rows, **asdict(drift)}


class DriftService:
    def __init__(
        self, db: Database, settings: MonitoringSettings, vocabularies: Vocabularies | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.vocabularies = vocabularies
        self.thresholds = Thresholds(settings.drift_p_value, settings.drift_distance)

    async def run(
        self, window: timedelta, model: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Measure and store one report per version that answered in the window."""
        end = now or datetime.now(UTC)
        start = end - window
        async with translate_errors("measuring drift"), self.db.engine.begin() as conn:
            reports = []
            for name, version, profile in await self._targets(conn, start, end, model):
                report = await self._measure(conn, name, version, profile or {}, start, end)
                await conn.execute(drift_reports.insert(), [report])
                reports.append(report)
        return reports

    async def reports(
        self, model: str | None, version: int | None, limit: int
    ) -> list[dict[str, Any]]:
        query = newest(drift_reports, model, version, limit)
        async with translate_errors("reading drift reports"), self.db.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def _targets(
        self, conn: AsyncConnection, start: datetime, end: datetime, model: str | None
    ) -> list[tuple[str, int, dict[str, Any] | None]]:
        window = Window(start, end, model, include_shadow=True)
        rows = await served_versions(conn, window)
        return [(name, version, profile) for name, version, _, profile in rows]

    async def _measure(
        self,
        conn: AsyncConnection,
        name: str,
        version: int,
        profile: Mapping[str, Any],
        start: datetime,
        end: datetime,
    ) -> dict[str, Any]:
        window = Window(start, end, name, version, include_shadow=True)
        analytics = AnalyticsRepository(conn)
        rows = int((await analytics.totals(window))["total"])
        report: dict[str, Any] = {
            "model_name": name,
            "model_version": version,
            "window_start": start,
            "window_end": end,
            "computed_at": datetime.now(UTC),
            "rows": rows,
            "score": None,
            "drift_detected": False,
            "features": None,
            "outputs": None,
        }
        features = _features(profile)
        needed = self.settings.drift_min_rows
        if not features:
            return report | {
                "status": "no_reference",
                "message": f"{name} v{version} has no reference profile: register it with "
                "--validation data to measure drift",
            }
        if rows < needed:
            return report | {
                "status": "insufficient_data",
                "message": f"{rows} answered predictions in the window; drift is tested from "
                f"{needed} (PREDICTD_DRIFT_MIN_ROWS)",
            }
        fraction = min(1.0, self.settings.drift_max_values / (rows * len(features)))
        inputs = await self._input_drift(conn, features, name, version, start, end, fraction)
        if isinstance(profile.get("tokens"), Mapping):
            inputs |= await self._token_drift(conn, profile, name, version, start, end)
        tested = [r for r in inputs.values() if r["status"] == "ok"]
        drifted = sum(1 for r in tested if r["drifted"])
        share = drifted / len(tested) if tested else None
        detected = share is not None and drifted > 0 and share >= self.settings.drift_share
        outputs = await self._output_drift(analytics, window, profile)
        message = (
            f"{drifted} of {len(tested)} features drifted ({share:.0%}; dataset drift from "
            f"{self.settings.drift_share:.0%})"
            if share is not None
            else "no feature had enough values in the window to test"
        )
        if fraction < 1 and conn.dialect.name == "postgresql":
            message += f"; inputs counted on a {fraction:.1%} sample of rows (by a hash of the id)"
        moved = [k for k, r in outputs.items() if r.get("drifted")]
        if moved:
            message += "; the model's " + " and ".join(moved) + " distribution moved"
        return report | {
            "status": "ok",
            "score": share,
            "drift_detected": detected,
            "features": inputs,
            "outputs": outputs or None,
            "message": message,
        }

    async def _input_drift(
        self,
        conn: AsyncConnection,
        features: list[Feature],
        name: str,
        version: int,
        start: datetime,
        end: datetime,
        fraction: float,
    ) -> dict[str, dict[str, Any]]:
        where = _answered(name, version, start, end)
        counts = await _bin_counts(conn, features, where, fraction)
        samples = await self._samples(conn, features, where)
        out = {}
        for feature in features:
            current = counts[feature.name]
            present = sum(current)
            if present < self.settings.drift_min_rows:
                out[feature.name] = {"status": "insufficient_data", "rows": present}
                continue
            ref = feature.reference
            drift = numeric_drift(
                ref.get("values"),
                samples.get(feature.name),
                ref.get("centres", []),
                ref.get("counts", []),
                current,
                float(ref.get("std", 0.0)),
                self.thresholds,
            )
            out[feature.name] = {
                "status": "ok",
                **_result(drift, present),
                "reference_mean": ref.get("mean"),
                "counts": current,
            }
        return out

    async def _token_drift(
        self,
        conn: AsyncConnection,
        profile: Mapping[str, Any],
        name: str,
        version: int,
        start: datetime,
        end: datetime,
    ) -> dict[str, dict[str, Any]]:
        """Token frequencies over the reference's most common known tokens, and the
        out-of-vocabulary share, of the most recent ``drift_sample`` texts, tokenized by the
        model's own analyzer (tokenizing is no job for SQL)."""
        reference = profile["tokens"]
        vocabulary = None
        if self.vocabularies is not None:
            try:
                vocabulary = await self.vocabularies(name, version)
            except Exception as exc:  # artifact missing or refused: the other tests still run
                where = {"model": name, "version": version, "error": repr(exc)}
                log.warning("drift: cannot open the model's vocabulary", extra=where)
        if vocabulary is None:
            gone = {"status": "unavailable", "rows": 0}
            return {"tokens": gone, "out_of_vocabulary": gone}
        rows = await conn.execute(
            select(p.input["text"].as_string())
            .where(_answered(name, version, start, end))
            .order_by(p.ts.desc())
            .limit(self.settings.drift_sample)
        )  # fmt: skip
        texts = [text for (text,) in rows if text]
        if len(texts) < self.settings.drift_min_rows:
            short = {"status": "insufficient_data", "rows": len(texts)}
            return {"tokens": short, "out_of_vocabulary": short}
        counts = await asyncio.to_thread(token_counts, texts, vocabulary, list(reference["counts"]))
        oov = counts.pop(OOV, 0)
        known = sum(counts.values())
        reference_rows = int(profile.get("rows") or 0)
        tokens = categorical_drift(reference["counts"], counts, reference_rows, self.thresholds)
        ref_oov = int(reference["oov"])
        unknown = categorical_drift(
            {"known": int(reference["total"]) - ref_oov, "unknown": ref_oov},
            {"known": known, "unknown": oov},
            reference_rows,
            self.thresholds,
        )
        token_result: dict[str, Any] = {"status": "ok", **_result(tokens, len(texts))}
        if not known:  # only unknown words: their share says it all
            token_result = {"status": "insufficient_data", "rows": len(texts)}
        return {
            "tokens": token_result | {"tokens": known + oov},
            "out_of_vocabulary": {
                "status": "ok",
                **_result(unknown, len(texts)),
                "rate": oov / (known + oov) if known + oov else None,
                "reference_rate": reference.get("oov_rate"),
            },
        }

    async def _samples(
        self, conn: AsyncConnection, features: list[Feature], where: ColumnElement[bool]
    ) -> dict[str, list[float]]:
        """The most recent raw values, for the features whose reference is small enough for
        a Kolmogorov-Smirnov test."""
        small = [f for f in features if f.reference.get("values") is not None]
        if not small:
            return {}
        rows = await conn.execute(
            select(*(f.value() for f in small))
            .where(where)
            .order_by(p.ts.desc())
            .limit(self.settings.drift_sample)
        )
        columns = list(zip(*rows, strict=True)) or [() for _ in small]
        return {
            f.name: [float(v) for v in column if v is not None and math.isfinite(float(v))]
            for f, column in zip(small, columns, strict=True)
        }

    async def _output_drift(
        self, analytics: AnalyticsRepository, window: Window, profile: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """The predicted-label and confidence distributions, from the rollups."""
        out: dict[str, dict[str, Any]] = {}
        reference_rows = int(profile.get("rows") or 0)
        ref_labels = profile.get("predicted_labels")
        labels = {label_key(label): n for label, n in await analytics.distribution(window)}
        if isinstance(ref_labels, Mapping) and ref_labels and labels:
            drift = categorical_drift(ref_labels, labels, reference_rows, self.thresholds)
            out["label"] = {"status": "ok", **_result(drift, sum(labels.values())),
                            "counts": labels}  # fmt: skip
        ref_bins = profile.get("confidence_bins")
        bins = await analytics.confidence_bins(window)
        if isinstance(ref_bins, Sequence) and sum(ref_bins) and sum(bins):
            drift = binned_drift(CONFIDENCE_CENTRES, ref_bins, bins, reference_rows,
                                 self.thresholds)  # fmt: skip
            out["confidence"] = {"status": "ok", **_result(drift, sum(bins)), "counts": bins}
        return out


def _answered(name: str, version: int, start: datetime, end: datetime) -> ColumnElement[bool]:
    """The rows whose inputs a drift report reads: the version's answered predictions."""
    return and_(
        p.model_name == name,
        p.model_version == version,
        p.status == "ok",
        p.ts >= start,
        p.ts < end,
    )


def _sampled(fraction: float) -> ColumnElement[bool]:
    """A fixed pseudo-random share of rows, chosen by a hash of the id: the same rows each
    run, and parallel-safe (random() would keep the scan on one core)."""
    bucket = func.hashtext(cast(p.id, Text)).op("&")(HASH_MASK)
    return bucket < int(fraction * (HASH_MASK + 1))


async def _bin_counts(
    conn: AsyncConnection,
    features: list[Feature],
    where: ColumnElement[bool],
    fraction: float = 1.0,
) -> dict[str, list[int]]:
    """Rows per reference bin for each feature.

    PostgreSQL reads each value once, in one scan: every row becomes an array of bin numbers,
    unnested and counted (parallel-safe; GROUPING SETS would sort once per feature). With
    ``fraction`` < 1 it counts a pseudo-random sample of rows instead: reading a JSON value
    costs ~0.1-0.3 µs, so a 30-feature model at a million rows would otherwise take seconds.
    SQLite (small by nature) runs one exact GROUP BY per feature."""
    counts = {f.name: [0] * (len(f.edges) + 1) for f in features}
    buckets = [f.bucket(conn.dialect.name) for f in features]
    if conn.dialect.name == "postgresql":
        sampled = where if fraction >= 1 else and_(where, _sampled(fraction))
        binned = select(postgresql.array(buckets).label("bins")).where(sampled).subquery("binned")
        each = (
            func.unnest(binned.c.bins)
            .table_valued("bin", with_ordinality="feature")
            .render_derived()
        )
        rows = await conn.execute(
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
        result = await conn.execute(select(bucket, func.count()).where(where).group_by(bucket))
        for row in result:
            if row[0] != MISSING:
                counts[feature.name][int(row[0])] += int(row[1])
    return counts
