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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.inference.runtime import TextVocabulary
from predictd.monitoring.drift_stats import (
    FeatureDrift,
    Thresholds,
    binned_drift,
    categorical_drift,
    numeric_drift,
)
from predictd.monitoring.profile import OOV, token_counts
from predictd.monitoring.repository import DriftRepository, Feature
from predictd.monitoring.repository.drift import TEXT_LENGTH
from predictd.settings import MonitoringSettings
from predictd.vocabulary import CONFIDENCE_BINS, Window, comparable_label

log = logging.getLogger("predictd.monitor")

# (model name, version) -> the text model's tokenizer and vocabulary (ModelRegistry.vocabulary)
Vocabularies = Callable[[str, int], Awaitable[TextVocabulary | None]]

CONFIDENCE_CENTRES = [(i + 0.5) / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS)]


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
        # Measured on the read replica when there is one; stored on the primary.
        async with translate_errors("measuring drift"), self.db.read_connection() as conn:
            repo = DriftRepository(conn)
            reports = [
                await self._measure(repo, name, version, profile or {}, start, end)
                for name, version, profile in await self._targets(repo, start, end, model)
            ]
        async with translate_errors("storing drift reports"), self.db.engine.begin() as conn:
            writer = DriftRepository(conn)
            for report in reports:
                await writer.add(report)
        return reports

    async def history(
        self, model: str | None, version: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """The stored reports, newest first."""
        async with translate_errors("reading drift reports"), self.db.engine.connect() as conn:
            return await DriftRepository(conn).history(model, version, limit)

    async def _targets(
        self, repo: DriftRepository, start: datetime, end: datetime, model: str | None
    ) -> list[tuple[str, int, dict[str, Any] | None]]:
        window = Window(start, end, model, include_shadow=True)
        rows = await repo.served(window)
        return [(name, version, profile) for name, version, _, profile in rows]

    async def _measure(
        self,
        repo: DriftRepository,
        name: str,
        version: int,
        profile: Mapping[str, Any],
        start: datetime,
        end: datetime,
    ) -> dict[str, Any]:
        window = Window(start, end, name, version, include_shadow=True)
        rows = await repo.answered(window)
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
        inputs = await self._input_drift(repo, features, window, fraction)
        if isinstance(profile.get("tokens"), Mapping):
            inputs |= await self._token_drift(repo, profile, name, version, window)
        tested = [r for r in inputs.values() if r["status"] == "ok"]
        drifted = sum(1 for r in tested if r["drifted"])
        share = drifted / len(tested) if tested else None
        detected = share is not None and drifted > 0 and share >= self.settings.drift_share
        outputs = await self._output_drift(repo, window, profile)
        message = (
            f"{drifted} of {len(tested)} features drifted ({share:.0%}; dataset drift from "
            f"{self.settings.drift_share:.0%})"
            if share is not None
            else "no feature had enough values in the window to test"
        )
        if fraction < 1 and repo.can_sample:
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
        repo: DriftRepository,
        features: list[Feature],
        window: Window,
        fraction: float,
    ) -> dict[str, dict[str, Any]]:
        counts = await repo.bin_counts(features, window, fraction)
        # Raw values only for references small enough for a Kolmogorov-Smirnov test.
        small = [f for f in features if f.reference.get("values") is not None]
        samples = await repo.samples(small, window, self.settings.drift_sample) if small else {}
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
        repo: DriftRepository,
        profile: Mapping[str, Any],
        name: str,
        version: int,
        window: Window,
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
        texts = await repo.texts(window, self.settings.drift_sample)
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

    async def _output_drift(
        self, repo: DriftRepository, window: Window, profile: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """The predicted-label and confidence distributions, from the rollups."""
        out: dict[str, dict[str, Any]] = {}
        reference_rows = int(profile.get("rows") or 0)
        ref_labels = profile.get("predicted_labels")
        labels = {comparable_label(label): n for label, n in await repo.predicted_labels(window)}
        if isinstance(ref_labels, Mapping) and ref_labels and labels:
            drift = categorical_drift(ref_labels, labels, reference_rows, self.thresholds)
            out["label"] = {"status": "ok", **_result(drift, sum(labels.values())),
                            "counts": labels}  # fmt: skip
        ref_bins = profile.get("confidence_bins")
        bins = await repo.confidence_bins(window)
        if isinstance(ref_bins, Sequence) and sum(ref_bins) and sum(bins):
            drift = binned_drift(CONFIDENCE_CENTRES, ref_bins, bins, reference_rows,
                                 self.thresholds)  # fmt: skip
            out["confidence"] = {"status": "ok", **_result(drift, sum(bins)), "counts": bins}
        return out
