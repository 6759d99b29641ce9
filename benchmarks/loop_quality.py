"""Part G: loop quality. How often the monitor's drift test raises a false alarm, how often it
sees a one-feature shift, and how close its label-free accuracy estimate lands.

Everything goes through predictd's own code, as the server runs it:

* a version and its reference profile come from ``ModelRegistry.inspect`` with
  ``monitoring.profile.validation_profiler`` (what ``predictd demo`` and ``predictd models
  register --validation`` do): the profile's bin edges, counts, values and calibration are the
  registry's;
* a window is judged by ``DriftService._measure`` itself (settings: ``MonitoringSettings()``
  defaults), with its repository's reads answered from the window's rows in memory
  (``WindowRows``): each feature counted into the reference's bins by numpy's
  ``searchsorted(side="right")`` (what PostgreSQL's ``width_bucket`` and SQLite's CASE count)
  and the ``drift_sample`` most recent values for the Kolmogorov-Smirnov test;
* the accuracy estimate is ``PerformanceService._measure`` (``estimated_performance`` over the
  rollups' confidence deciles, mapped through the version's calibration, beside the realised
  accuracy from the labels), its reads answered in memory the same way (``WindowAnswers``).

A full run also repeats a few windows through the real path on a fresh PostgreSQL database
(made on ``--postgres-admin`` and dropped afterwards, or ``--postgres URL``, an empty one):
versions registered, rows written by ``PredictionWriter``, labels by ``FeedbackService``, then
``DriftService.run`` and ``PerformanceService.run``; they must give the same figures as in
memory (exit status 1 otherwise), which shows that the in-memory reads are the SQL's.

The model is the demo's (``predictd.demo.train.train_tabular``: RandomForest on scikit-learn's
breast-cancer data, 569 rows, 30 features; its validation split has 114 rows). Where windows
come from ("the same distribution"):

* ``demo``: the demo's own validation split as the reference (114 rows: a Kolmogorov-Smirnov
  test per feature); windows are bootstrap resamples of the whole data set (its empirical
  distribution, of which the reference is one sample);
* ``small``: 114 rows of a synthetic population as the reference (the same test, without the
  bootstrap's ties); ``large``: 5,000 rows of it (normalised Wasserstein distance per feature).
  The population: a class drawn at the data's rate, then that class's multivariate normal
  fitted to the data; windows are fresh draws from it, with their true labels.

Run: ``.venv/bin/python -m benchmarks.loop_quality`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import split_sections, table
from predictd.db.engine import Database
from predictd.demo.train import DemoModel, train_tabular
from predictd.inference.formats import runtime_for
from predictd.inference.runtime import Label, ModelRuntime, Prediction
from predictd.inference.sklearn_runtime import load_estimator
from predictd.inference.values import ItemInput
from predictd.monitoring.drift import DriftService
from predictd.monitoring.performance import PerformanceService, Target
from predictd.monitoring.profile import validation_profiler
from predictd.monitoring.repository import DriftRepository, Feature, PerformanceRepository
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from predictd.settings import MonitoringSettings, Settings
from predictd.vocabulary import CONFIDENCE_BINS, Window, confidence_bin

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "loop"
SEED = 16  # the streams (issue 16)
MODEL_SEED = 0  # train_tabular's default: the demo model itself
SHIFT_SD = 0.5  # the one-feature mean shift, in the reference's standard deviations
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(hours=1)  # nominal: every window is one hour of traffic
DEMO_VALIDATION_ROWS = 114  # train_tabular's held-out split (20% of 569)
TILT_FEATURE = "mean_radius"  # the accuracy estimate's covariate and concept shifts
CONCEPT_QUANTILE = 0.8  # concept shift: benign cases above this quantile of TILT_FEATURE

FALSE_ALARM_TARGET = 0.01
DETECTION_TARGET = 0.99
ESTIMATE_TARGET_PP = 2.0


@dataclass(frozen=True)
class Sizes:
    windows: int  # per stream
    rows: int  # per window
    large_reference: int  # validation rows of the ``large`` reference
    sweep_windows: int  # per feature when each feature is shifted in turn (0: no sweep)
    reference_draws: int  # further small references, each drawn afresh
    draw_windows: int  # unshifted and shifted windows per further reference
    narrow_rows: tuple[int, ...]  # smaller windows, down to the default drift_min_rows
    narrow_windows: int  # unshifted and shifted windows per size and reference


FULL = Sizes(100, 10_000, 5_000, 5, 20, 5, (200, 500, 1_000, 2_000), 100)
QUICK = Sizes(6, 2_000, 2_000, 0, 2, 2, (200, 1_000), 5)


# -- populations ----------------------------------------------------------------------------


class Bootstrap:
    """Rows drawn with replacement from a data set: its empirical distribution."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        picked = rng.integers(0, len(self.x), n)
        return self.x[picked], self.y[picked]


class Mixture:
    """A class drawn at the data's rate, then that class's multivariate normal fitted to the
    data: unlimited fresh rows with their true labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.share = float(y.mean())  # class 1 (benign)
        self.means = [x[y == k].mean(axis=0) for k in (0, 1)]
        self.covs = [np.cov(x[y == k], rowvar=False) for k in (0, 1)]

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        benign = rng.random(n) < self.share
        rows = np.empty((n, len(self.means[0])))
        for k in (0, 1):
            picked = np.flatnonzero(benign == bool(k))
            rows[picked] = rng.multivariate_normal(self.means[k], self.covs[k], size=len(picked))
        return rows, benign.astype(np.int64)

    def selected(
        self,
        rng: np.random.Generator,
        n: int,
        keep: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows kept with probability ``keep(rows)`` (rejection sampling): a covariate
        shift, since whether a row is kept depends on its inputs only, so P(class | x), and
        with it what the model's confidence means, stays what validation saw."""
        rows, labels = np.empty((0, len(self.means[0]))), np.empty(0, dtype=np.int64)
        while len(rows) < n:
            more, classes = self.draw(rng, 4 * n)
            kept = rng.random(len(more)) < keep(more)
            rows, labels = np.vstack([rows, more[kept]]), np.concatenate([labels, classes[kept]])
        return rows[:n], labels[:n]


# -- versions as the registry makes them -----------------------------------------------------


CHECK_EVERY = 10  # Version.answer: every tenth call is checked against the runtime's own


@dataclass
class Version:
    """A registered version: its candidate (profile included), the runtime serving opens, and
    the artifact's estimator for answering many rows fast (checked against the runtime)."""

    name: str
    candidate: ModelVersion
    runtime: ModelRuntime
    names: tuple[str, ...]
    estimator: Any
    calls: int = 0

    @property
    def profile(self) -> dict[str, Any]:
        return self.candidate.reference_profile

    def predict(self, rows: np.ndarray) -> list[Prediction]:
        """The runtime's own answers (what serving records) to named feature rows."""
        return self.runtime.predict([dict(zip(self.names, r, strict=True)) for r in rows.tolist()])

    def answer(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted labels, confidences): the likeliest class and its probability, as the
        runtime's ``from_probabilities`` makes them, from the estimator directly (the runtime
        builds a Prediction per row, five times the model's own time); every CHECK_EVERY-th
        call also asks the runtime and must agree exactly."""
        proba = np.asarray(self.estimator.predict_proba(rows), dtype=np.float64)
        best = proba.argmax(axis=1)
        classes = np.asarray(self.runtime.meta.classes or [], dtype=np.int64)
        labels, confidence = classes[best], proba[np.arange(len(rows)), best]
        if self.calls % CHECK_EVERY == 0:
            outputs = self.predict(rows)
            assert labels.tolist() == [o.label for o in outputs]
            assert confidence.tolist() == [o.confidence for o in outputs]
        self.calls += 1
        return labels, confidence


def validation_items(
    names: Sequence[str], rows: np.ndarray, labels: np.ndarray
) -> list[tuple[ItemInput, Label]]:
    return [
        (ItemInput(features=dict(zip(names, r, strict=True))), int(y))
        for r, y in zip(rows.tolist(), labels.tolist(), strict=True)
    ]


def register(
    trained: DemoModel,
    name: str,
    validation: Sequence[tuple[ItemInput, Label]],
    settings: Settings,
) -> Version:
    """What ``predictd models register --validation`` does up to the database: inspect with
    the validation profiler (reference profile and calibration), then open the runtime."""
    assert trained.feature_names is not None
    registry = ModelRegistry(settings.inference, Database(settings.database))
    candidate = registry.inspect(
        trained.path,
        name,
        metrics=trained.metrics,
        training_samples=trained.training_samples,
        feature_names=trained.feature_names,
        profiler=validation_profiler(validation, settings.inference),
    )
    meta = candidate.meta(source="registry", loaded_at=candidate.created_at)
    runtime = runtime_for(candidate.flavor, trained.path, meta, settings.inference)
    runtime.prepare()
    estimator = load_estimator(trained.path)
    return Version(name, candidate, runtime, trained.feature_names, estimator)


def reprofile(
    version: Version, name: str, validation: Sequence[tuple[ItemInput, Label]], settings: Settings
) -> Version:
    """The same artifact registered again with other validation data: what ``inspect`` does
    with the profiler (run on the runtime serving opens), without opening the file again."""
    profile = validation_profiler(validation, settings.inference)
    assert profile is not None
    candidate = replace(version.candidate, name=name, reference_profile=profile(version.runtime))
    return replace(version, name=name, candidate=candidate, calls=0)


# -- the monitor's reads, answered from a window in memory ---------------------------------


class WindowRows(DriftRepository):
    """DriftRepository's reads over one window held in memory (rows oldest first): the same
    bins as the SQL (closed below: numpy's searchsorted(side="right"), PostgreSQL's
    width_bucket) and the most recent values first, as ``samples`` orders them."""

    def __init__(self, names: Sequence[str], rows: np.ndarray) -> None:  # no connection
        self.columns = {name: rows[:, i] for i, name in enumerate(names)}
        self.rows = len(rows)

    @property
    def can_sample(self) -> bool:
        return False

    async def answered(self, window: Window) -> int:
        return self.rows

    async def bin_counts(
        self, features: list[Feature], window: Window, fraction: float = 1.0
    ) -> dict[str, list[int]]:
        if fraction < 1:  # PostgreSQL would count a hashed sample of rows: not mirrored here
            raise ValueError("window too wide: PostgreSQL would count a sample of its rows")
        return {
            f.name: np.bincount(
                np.searchsorted(f.edges, self.columns[f.name], side="right"),
                minlength=len(f.edges) + 1,
            ).tolist()
            for f in features
        }

    async def samples(
        self, features: list[Feature], window: Window, limit: int
    ) -> dict[str, list[float]]:
        return {f.name: self.columns[f.name][::-1][:limit].tolist() for f in features}

    async def predicted_labels(self, window: Window) -> list[tuple[Any, int]]:
        return []  # the model's answers are not part of the dataset drift verdict

    async def confidence_bins(self, window: Window) -> list[int]:
        return [0] * CONFIDENCE_BINS


class WindowAnswers(PerformanceRepository):
    """PerformanceRepository's reads over one window of answers and labels in memory: the
    confusion counts the join would give, and per predicted label what the rollups keep
    (confidence sum and count, answers per ``confidence_bin``)."""

    def __init__(self, predicted: np.ndarray, confidence: np.ndarray, actual: np.ndarray) -> None:
        self.predicted = predicted.tolist()
        self.confidence = confidence.tolist()
        self.actual = actual.tolist()

    async def confusion(self, window: Window) -> list[tuple[Any, Any, int]]:
        pairs = Counter(zip(self.predicted, self.actual, strict=True))
        return [(p, a, n) for (p, a), n in pairs.items()]

    async def label_confidences(self, window: Window) -> list[tuple[Any, float, int, list[int]]]:
        per: dict[int, tuple[float, int, list[int]]] = {}
        for label, c in zip(self.predicted, self.confidence, strict=True):
            total, count, bins = per.get(label, (0.0, 0, [0] * CONFIDENCE_BINS))
            bins[confidence_bin(c)] += 1
            per[label] = (total + c, count + 1, bins)
        return [(label, s, n, bins) for label, (s, n, bins) in per.items()]

    async def answered(self, window: Window) -> int:
        return len(self.predicted)


def window_bounds(index: int) -> tuple[datetime, datetime]:
    start = EPOCH + index * WINDOW
    return start, start + WINDOW


async def drift_report(
    service: DriftService, version: Version, rows: np.ndarray, index: int = 0
) -> dict[str, Any]:
    start, end = window_bounds(index)
    repo = WindowRows(version.names, rows)
    return await service._measure(repo, version.name, 1, version.profile, start, end)


async def performance_row(
    version: Version,
    predicted: np.ndarray,
    confidence: np.ndarray,
    actual: np.ndarray,
    *,
    calibrated: bool = True,
    index: int = 0,
) -> dict[str, Any]:
    """The monitor's performance row for one window; ``calibrated=False``: as for a version
    registered without a calibration (each answer right with its confidence)."""
    start, end = window_bounds(index)
    calibration = version.profile.get("calibration") if calibrated else None
    target = Target(version.name, 1, "classification", calibration)
    service = PerformanceService(Database(Settings(_env_file=None).database))
    return await service._measure(WindowAnswers(predicted, confidence, actual), target, start, end)


# -- drift: false alarms and detection -----------------------------------------------------


def decisive(result: Mapping[str, Any]) -> float:
    """What a feature's verdict was decided on: a test's p-value, else the distance."""
    p = result.get("p_value")
    return float(result["statistic"] if p is None else p)


@dataclass
class DriftStream:
    """What the monitor said over a stream of windows."""

    windows: int = 0
    detected: int = 0  # dataset drift (drift_detected: what the drift alert fires on)
    any_feature: int = 0  # windows with at least one feature flagged
    feature_tests: int = 0
    feature_flags: Counter[str] = field(default_factory=Counter)
    flagged_per_window: list[int] = field(default_factory=list)
    methods: Counter[str] = field(default_factory=Counter)
    decisive: dict[str, list[float]] = field(default_factory=dict)  # feature -> per window

    def add(self, report: dict[str, Any]) -> set[str]:
        assert report["status"] == "ok", report.get("message")
        flagged = {k for k, f in report["features"].items() if f.get("drifted")}
        for name, result in report["features"].items():
            self.decisive.setdefault(name, []).append(decisive(result))
        self.windows += 1
        self.detected += bool(report["drift_detected"])
        self.any_feature += bool(flagged)
        self.feature_tests += len(report["features"])
        self.feature_flags.update(flagged)
        self.flagged_per_window.append(len(flagged))
        self.methods.update(f["method"] for f in report["features"].values())
        return flagged


@dataclass
class Regime:
    """One reference and its streams: unshifted windows, and one feature shifted."""

    name: str
    reference_rows: int
    method: str
    population: str
    shifted_feature: str
    shift: float  # in the feature's own units: SHIFT_SD x the reference's std
    null: DriftStream = field(default_factory=DriftStream)
    shifted: DriftStream = field(default_factory=DriftStream)
    shifted_hits: int = 0  # windows in which the shifted feature was flagged
    sweep: dict[str, float] = field(default_factory=dict)  # feature -> detection rate
    sweep_decisive: list[float] = field(default_factory=list)  # the moved feature's, all


async def run_regime(
    name: str,
    version: Version,
    draw: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]],
    population: str,
    chosen: str,
    sizes: Sizes,
    settings: MonitoringSettings,
    seed: int,
) -> Regime:
    """Unshifted windows, windows with ``chosen`` moved by SHIFT_SD of the reference's sd,
    and (``sweep_windows``) each feature moved in turn."""
    service = DriftService(Database(Settings(_env_file=None).database), settings)
    names = list(version.names)
    features = version.profile["features"]
    std = {n: float(features[n]["std"]) for n in names}
    regime = Regime(
        name,
        int(version.profile["rows"]),
        "",
        population,
        chosen,
        SHIFT_SD * std[chosen],
    )
    rng = np.random.default_rng([seed, 1])
    for i in range(sizes.windows):
        rows, _ = draw(rng, sizes.rows)
        regime.null.add(await drift_report(service, version, rows, i))
    rng = np.random.default_rng([seed, 2])
    for i in range(sizes.windows):
        rows, _ = draw(rng, sizes.rows)
        rows[:, names.index(chosen)] += regime.shift
        regime.shifted_hits += chosen in regime.shifted.add(
            await drift_report(service, version, rows, i)
        )
    regime.method = ", ".join(sorted(regime.null.methods))
    rng = np.random.default_rng([seed, 3])
    for column, feature in enumerate(names if sizes.sweep_windows else []):
        hits = 0
        for i in range(sizes.sweep_windows):
            rows, _ = draw(rng, sizes.rows)
            rows[:, column] += SHIFT_SD * std[feature]
            report = await drift_report(service, version, rows, i)
            hits += bool(report["features"][feature]["drifted"])
            regime.sweep_decisive.append(decisive(report["features"][feature]))
        regime.sweep[feature] = hits / sizes.sweep_windows
    return regime


@dataclass
class Narrow:
    """One reference against windows of fewer rows."""

    reference: str
    rows: int
    null: DriftStream = field(default_factory=DriftStream)
    shifted: DriftStream = field(default_factory=DriftStream)
    shifted_hits: int = 0


async def run_narrow(
    name: str,
    version: Version,
    mixture: Mixture,
    chosen: str,
    sizes: Sizes,
    settings: MonitoringSettings,
) -> list[Narrow]:
    """Unshifted and one-feature-shifted windows of each of ``narrow_rows`` rows: the monitor
    gives a verdict from ``drift_min_rows`` answered predictions."""
    service = DriftService(Database(Settings(_env_file=None).database), settings)
    column = list(version.names).index(chosen)
    shift = SHIFT_SD * float(version.profile["features"][chosen]["std"])
    found = []
    for rows in sizes.narrow_rows:
        narrow = Narrow(name, rows)
        rng = np.random.default_rng([SEED, 5, rows])
        for i in range(sizes.narrow_windows):
            narrow.null.add(await drift_report(service, version, mixture.draw(rng, rows)[0], i))
            window = mixture.draw(rng, rows)[0]
            window[:, column] += shift
            flagged = narrow.shifted.add(await drift_report(service, version, window, i))
            narrow.shifted_hits += chosen in flagged
        found.append(narrow)
    return found


@dataclass
class ReferenceDraws:
    """Small references drawn afresh: how much a fixed small reference decides the verdicts."""

    rows: int
    windows: int  # per reference, unshifted and shifted each
    null_flagged: list[int] = field(default_factory=list)  # per reference: windows with a flag
    null_tests: int = 0
    null_flags: int = 0
    null_detected: int = 0
    shifted_hits: int = 0
    shifted_detected: int = 0
    persistent: int = 0  # references whose unshifted windows all had a feature flagged

    @property
    def references(self) -> int:
        return len(self.null_flagged)


async def run_reference_draws(
    base: Version,
    mixture: Mixture,
    settings: Settings,
    monitoring: MonitoringSettings,
    chosen: str,
    sizes: Sizes,
) -> ReferenceDraws:
    """``reference_draws`` references of DEMO_VALIDATION_ROWS fresh rows, each registered and
    tested against ``draw_windows`` unshifted and as many shifted windows."""
    names = list(base.names)
    service = DriftService(Database(settings.database), monitoring)
    found = ReferenceDraws(DEMO_VALIDATION_ROWS, sizes.draw_windows)
    for r in range(sizes.reference_draws):
        rng = np.random.default_rng([SEED, 7, r])
        rows, labels = mixture.draw(rng, DEMO_VALIDATION_ROWS)
        validation = validation_items(names, rows, labels)
        version = reprofile(base, f"loop_draw_{r}", validation, settings)
        shift = SHIFT_SD * float(version.profile["features"][chosen]["std"])
        flagged_windows = 0
        for i in range(sizes.draw_windows):
            null = DriftStream()
            flagged = null.add(
                await drift_report(service, version, mixture.draw(rng, sizes.rows)[0], i)
            )
            flagged_windows += bool(flagged)
            found.null_tests += null.feature_tests
            found.null_flags += len(flagged)
            found.null_detected += null.detected
            window = mixture.draw(rng, sizes.rows)[0]
            window[:, names.index(chosen)] += shift
            shifted = DriftStream()
            found.shifted_hits += chosen in shifted.add(
                await drift_report(service, version, window, i)
            )
            found.shifted_detected += shifted.detected
        found.null_flagged.append(flagged_windows)
        found.persistent += flagged_windows == sizes.draw_windows
    return found


# -- the label-free accuracy estimate ------------------------------------------------------


@dataclass
class EstimateStream:
    """Estimated against realised accuracy, window by window, in percentage points."""

    name: str
    calibration_rows: int
    realised: list[float] = field(default_factory=list)
    estimated: list[float] = field(default_factory=list)
    uncalibrated: list[float] = field(default_factory=list)  # confidence taken as is
    confidence: list[float] = field(default_factory=list)  # mean confidence per window
    moved: list[float] = field(default_factory=list)  # TILT_FEATURE's mean, in its sd

    def errors(self, which: list[float] | None = None) -> np.ndarray:
        got = self.estimated if which is None else which
        errors: np.ndarray = np.abs(np.asarray(got) - np.asarray(self.realised)) * 100
        return errors

    def summary(self) -> dict[str, float]:
        gap = (np.asarray(self.estimated) - np.asarray(self.realised)) * 100
        raw = self.errors(self.uncalibrated)
        return {
            "confidence_mean": float(np.mean(self.confidence)),
            "moved_sd": float(np.mean(self.moved)),
            "realised_mean": float(np.mean(self.realised)) * 100,
            "estimated_mean": float(np.mean(self.estimated)) * 100,
            "bias_pp": float(gap.mean()),
            "abs_error_mean_pp": float(self.errors().mean()),
            "abs_error_p95_pp": float(np.quantile(self.errors(), 0.95)),
            "abs_error_max_pp": float(self.errors().max()),
            "uncalibrated_abs_error_mean_pp": float(raw.mean()),
            "uncalibrated_abs_error_max_pp": float(raw.max()),
        }


# One window of a stream: inputs, true labels, and the model's answers (labels, confidences).
Answered = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


async def estimate_streams(
    name: str,
    versions: Sequence[Version],
    windows: Callable[[np.random.Generator], Answered],
    sizes: Sizes,
    seed: int,
    tilt: tuple[int, float, float],
) -> list[EstimateStream]:
    """One stream of windows, estimated through each version's calibration (the versions
    share the model, so its answers are the same); ``tilt``: (column, population mean, sd) of
    the feature whose move is reported."""
    streams = [EstimateStream(name, int(v.profile["rows"])) for v in versions]
    column, mean, sd = tilt
    rng = np.random.default_rng(seed)
    for _ in range(sizes.windows):
        rows, actual, predicted, confidence = windows(rng)
        for version, stream in zip(versions, streams, strict=True):
            row = await performance_row(version, predicted, confidence, actual)
            raw = await performance_row(version, predicted, confidence, actual, calibrated=False)
            assert row["estimated"]["calibrated"]
            assert not raw["estimated"]["calibrated"]
            stream.realised.append(row["metrics"]["accuracy"])
            stream.estimated.append(row["estimated"]["accuracy"])
            stream.uncalibrated.append(raw["estimated"]["accuracy"])
            stream.confidence.append(float(confidence.mean()))
            stream.moved.append(float((rows[:, column].mean() - mean) / sd))
    return streams


# -- the whole run -------------------------------------------------------------------------


@dataclass
class Run:
    sizes: Sizes
    settings: MonitoringSettings
    model_metrics: dict[str, float]
    regimes: list[Regime] = field(default_factory=list)
    draws: ReferenceDraws | None = None
    narrow: list[Narrow] = field(default_factory=list)
    estimates: list[EstimateStream] = field(default_factory=list)
    postgres: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


async def measure(sizes: Sizes, work: Path, postgres: str | None) -> Run:
    from sklearn.datasets import load_breast_cancer

    started = time.perf_counter()
    settings = Settings(_env_file=None, artifact_dir=work / "artifacts")
    monitoring = MonitoringSettings()
    trained = train_tabular(work / "model", seed=MODEL_SEED)
    assert trained.feature_names is not None
    names = trained.feature_names
    data = load_breast_cancer()
    x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.int64)
    bootstrap, mixture = Bootstrap(x, y), Mixture(x, y)
    rng = np.random.default_rng([SEED, 0])
    small_rows, small_labels = mixture.draw(rng, DEMO_VALIDATION_ROWS)
    large_rows, large_labels = mixture.draw(rng, sizes.large_reference)
    versions = {
        "demo": register(trained, "loop_demo", trained.validation, settings),
        "small": register(
            trained, "loop_small", validation_items(names, small_rows, small_labels), settings
        ),
        "large": register(
            trained, "loop_large", validation_items(names, large_rows, large_labels), settings
        ),
    }
    run = Run(sizes, monitoring, trained.metrics)
    populations: dict[str, tuple[Any, str]] = {
        "demo": (bootstrap.draw, "bootstrap of the 569-row data set"),
        "small": (mixture.draw, "fresh draws from the fitted mixture"),
        "large": (mixture.draw, "fresh draws from the fitted mixture"),
    }
    chosen = names[int(np.random.default_rng(SEED).integers(len(names)))]
    for n, (name, (draw, population)) in enumerate(populations.items()):
        regime = await run_regime(
            name, versions[name], draw, population, chosen, sizes, monitoring, SEED * 100 + n
        )
        run.regimes.append(regime)
    draws = await run_reference_draws(
        versions["small"], mixture, settings, monitoring, chosen, sizes
    )
    run.draws = draws
    for name in ("small", "large"):
        run.narrow += await run_narrow(name, versions[name], mixture, chosen, sizes, monitoring)

    large = versions["large"]
    tilt = names.index(TILT_FEATURE)
    mean, sd = float(x[:, tilt].mean()), float(x[:, tilt].std())
    threshold = float(np.quantile(x[y == 1][:, tilt], CONCEPT_QUANTILE))
    moved = (tilt, mean, sd)

    def answered(rows: np.ndarray, labels: np.ndarray) -> Answered:
        return (rows, labels, *large.answer(rows))

    def calibrated(r: np.random.Generator) -> Answered:
        return answered(*mixture.draw(r, sizes.rows))

    def larger(rows: np.ndarray) -> np.ndarray:
        # Exponential tilting: a normal feature's mean moves by SHIFT_SD of its sd (capped at
        # 3 sd, above which every row is kept).
        z = (rows[:, tilt] - mean) / sd
        return np.minimum(1.0, np.exp(SHIFT_SD * (z - 3.0)))

    def unsure(r: np.random.Generator) -> Answered:
        # Kept with a probability falling with the model's confidence (itself a function of
        # the inputs): the answers used to choose are the ones the window reports.
        parts: list[Answered] = []
        while sum(len(part[0]) for part in parts) < sizes.rows:
            rows, labels, predicted, confidence = answered(*mixture.draw(r, sizes.rows))
            kept = r.random(len(rows)) < np.minimum(1.0, 0.1 + 2.0 * (1.0 - confidence))
            parts.append((rows[kept], labels[kept], predicted[kept], confidence[kept]))
        rows, labels, predicted, confidence = (np.concatenate(p) for p in zip(*parts, strict=True))
        n = sizes.rows
        return rows[:n], labels[:n], predicted[:n], confidence[:n]

    def concept(r: np.random.Generator) -> Answered:
        rows, labels = mixture.draw(r, sizes.rows)
        labels[(labels == 1) & (rows[:, tilt] > threshold)] = 0
        return answered(rows, labels)

    streams: list[tuple[str, Callable[[np.random.Generator], Answered], list[Version]]] = [
        ("calibrated: same population as validation", calibrated, [large, versions["small"]]),
        (
            f"covariate: towards larger `{TILT_FEATURE}`",
            lambda r: answered(*mixture.selected(r, sizes.rows, larger)),
            [large],
        ),
        ("covariate: more low-confidence cases", unsure, [large]),
        (
            f"concept: benign above the benign {CONCEPT_QUANTILE:.0%} quantile of "
            f"`{TILT_FEATURE}` relabelled malignant",
            concept,
            [large],
        ),
    ]
    for n, (name, windows, calibrations) in enumerate(streams):
        found = await estimate_streams(name, calibrations, windows, sizes, SEED * 1000 + n, moved)
        run.estimates += found
    if postgres is not None:
        cases = postgres_cases(run, versions, bootstrap, mixture, sizes)
        run.postgres = await check_postgres(postgres, versions, cases)
    run.seconds = time.perf_counter() - started
    return run


def postgres_cases(
    run: Run, versions: Mapping[str, Version], bootstrap: Bootstrap, mixture: Mixture, sizes: Sizes
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One unshifted and one shifted window for the ``demo`` and ``large`` references."""
    rng = np.random.default_rng([SEED, 99])
    cases = []
    for regime in run.regimes:
        if regime.name == "small":
            continue
        draw = bootstrap.draw if regime.name == "demo" else mixture.draw
        column = versions[regime.name].names.index(regime.shifted_feature)
        for shift in (0.0, regime.shift):
            rows, labels = draw(rng, sizes.rows)
            rows[:, column] += shift
            cases.append((regime.name, rows, labels))
    return cases


# -- the same windows through the real path on PostgreSQL ----------------------------------


async def check_postgres(
    url: str,
    versions: Mapping[str, Version],
    cases: Sequence[tuple[str, np.ndarray, np.ndarray]],
) -> list[dict[str, Any]]:
    """Register the versions in a fresh database, write each case's rows (and labels) as one
    window, run the real DriftService and PerformanceService over it, and compare with the
    in-memory figures for the same rows."""
    from predictd.db import migrate
    from predictd.monitoring.feedback import FeedbackItem, FeedbackService
    from predictd.recording.prediction_record import PredictionRecord
    from predictd.recording.repository import PredictionWriter

    with tempfile.TemporaryDirectory(prefix="loop-quality-pg-") as work:
        settings = Settings(_env_file=None, database_url=url, artifact_dir=Path(work))
        db = Database(settings.database)
        try:
            await migrate.upgrade(db)
            registry = ModelRegistry(settings.inference, db)
            for version in versions.values():
                assert (await registry.register(version.candidate)).version == 1
            drift = DriftService(db, MonitoringSettings())
            checks = []
            for index, (name, rows, labels) in enumerate(cases):
                version = versions[name]
                start, end = window_bounds(index)
                outputs = version.predict(rows)
                step = WINDOW / len(rows)
                records = [
                    PredictionRecord(
                        id=uuid.uuid4(),
                        ts=start + i * step,  # oldest first, as in memory
                        model_name=version.name,
                        model_version=1,
                        variant="production",
                        request_id=f"loop-{index}-{i}",
                        batch_id=None,
                        input={"features": dict(zip(version.names, row, strict=True))},
                        output=out.label,
                        confidence=out.confidence,
                        probabilities=out.probabilities,
                        latency_ms=1.0,
                        cache_hit=False,
                        status="ok",
                        error=None,
                        client_ip=None,
                        user_agent=None,
                    )
                    for i, (row, out) in enumerate(zip(rows.tolist(), outputs, strict=True))
                ]
                await PredictionWriter(db).write(records)
                await FeedbackService(db).submit(
                    [FeedbackItem(r.id, a) for r, a in zip(records, labels.tolist(), strict=True)]
                )
                (stored,) = await drift.run(WINDOW, model=version.name, now=end)
                (perf,) = await PerformanceService(db).run(WINDOW, model=version.name, now=end)
                memory = await drift_report(drift, version, rows, index)
                predicted, confidence = version.answer(rows)
                mine = await performance_row(version, predicted, confidence, labels, index=index)
                checks.append(compare(name, index, stored, memory, perf, mine))
        finally:
            await db.dispose()
    return checks


def compare(
    name: str,
    index: int,
    stored: Mapping[str, Any],
    memory: Mapping[str, Any],
    perf: Mapping[str, Any],
    mine: Mapping[str, Any],
) -> dict[str, Any]:
    """Whether the database's report equals the in-memory one, feature by feature."""
    keys = ("counts", "rows", "method", "statistic", "p_value", "drifted")
    differing = [
        f"{feature}.{key}"
        for feature, result in memory["features"].items()
        for key in keys
        if stored["features"][feature].get(key) != result.get(key)
    ]
    for key in ("rows", "score", "drift_detected"):
        if stored[key] != memory[key]:
            differing.append(key)
    accuracy = (perf["metrics"]["accuracy"], mine["metrics"]["accuracy"])
    estimate = (perf["estimated"]["accuracy"], mine["estimated"]["accuracy"])
    if accuracy[0] != accuracy[1]:
        differing.append("realised accuracy")
    if not math.isclose(estimate[0], estimate[1], rel_tol=0, abs_tol=1e-12):
        differing.append("estimated accuracy")
    return {
        "window": index,
        "reference": name,
        "rows": stored["rows"],
        "features_drifted": sum(bool(f.get("drifted")) for f in stored["features"].values()),
        "drift_detected": stored["drift_detected"],
        "realised": accuracy[0],
        "estimated": estimate[0],
        "differing": differing,
    }


# -- the report -----------------------------------------------------------------------------


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def verdicts(run: Run) -> list[list[str]]:
    """Each figure against issue 16's target."""
    rows = []
    for r in run.regimes:
        rows.append(
            [
                f"drift false alarms (dataset drift), `{r.name}` reference "
                f"({r.reference_rows:,} rows)",
                "<= 1%",
                f"{r.null.detected}/{r.null.windows} windows",
                "met" if r.null.detected <= FALSE_ALARM_TARGET * r.null.windows else "MISSED",
            ]
        )
    for r in run.regimes:
        outcomes = (("feature flagged", r.shifted_hits), ("dataset drift", r.shifted.detected))
        for what, hits in outcomes:
            rows.append(
                [
                    f"drift detection, +0.5 sd on `{r.shifted_feature}`, {what}, `{r.name}`",
                    ">= 99%",
                    f"{hits}/{r.shifted.windows} windows",
                    "met" if hits >= DETECTION_TARGET * r.shifted.windows else "MISSED",
                ]
            )
    for e in run.estimates:
        x = e.summary()
        rows.append(
            [
                f"accuracy estimate, {e.name}, {e.calibration_rows:,}-row calibration",
                "<= 2 pp",
                f"max {x['abs_error_max_pp']:.2f} pp (mean {x['abs_error_mean_pp']:.2f} pp)",
                "met" if x["abs_error_max_pp"] <= ESTIMATE_TARGET_PP else "MISSED",
            ]
        )
    return rows


def drift_lines(run: Run) -> list[str]:
    s, m = run.sizes, run.settings
    headers = ["reference", "rows", "test", "windows from", "false alarms (dataset drift)",
               "windows with a feature flagged", "feature tests flagged", "shifted feature",
               "flagged when shifted", "dataset drift when shifted"]  # fmt: skip
    body = [
        [
            f"`{r.name}`",
            f"{r.reference_rows:,}",
            r.method,
            r.population,
            pct(r.null.detected, r.null.windows),
            pct(r.null.any_feature, r.null.windows),
            pct(sum(r.null.feature_flags.values()), r.null.feature_tests),
            f"`{r.shifted_feature}` +{r.shift:.4g}",
            pct(r.shifted_hits, r.shifted.windows),
            pct(r.shifted.detected, r.shifted.windows),
        ]
        for r in run.regimes
    ]
    features = len(run.regimes[0].sweep) or 30
    lines = [
        "### Drift",
        "",
        f"{s.windows} unshifted windows and {s.windows} with one feature moved by +0.5 of the "
        "reference's standard deviation (the profile's `std`), per reference. *Dataset drift* "
        "(`drift_detected`) is what the drift alert fires on (`monitoring/alerts.py`, "
        f"`drift_findings`): at least `drift_share` ({m.drift_share:.0%}) of the tested "
        f"features drifted. One feature of {features} is {1 / features:.1%}, so at the default "
        "a one-feature shift can never raise the alert; the shifted feature's own verdict is in "
        "the report (`features`, and the alert's `drifted_features` when it fires). *Windows "
        "with a feature flagged* is what the alert would fire on with `drift_share` at "
        f"1/{features} or below.",
        "",
        *table(headers, body),
        "",
    ]
    for r in run.regimes:
        flags = ", ".join(f"`{k}` {v}" for k, v in r.null.feature_flags.most_common()) or "none"
        lines.append(
            f"- `{r.name}`: features flagged in unshifted windows (in how many of the "
            f"{r.null.windows}): {flags}; at most {max(r.null.flagged_per_window)} of "
            f"{features} in one window."
        )
        null = [(v, k) for k, values in r.null.decisive.items() for v in values]
        moved = r.shifted.decisive[r.shifted_feature] + r.sweep_decisive
        if r.method == "ks":
            p, name = min(null)
            lines.append(
                f"  Closest calls: smallest p-value of an unshifted test {p:.2g} (`{name}`), "
                f"largest of a moved feature {max(moved):.2g} (flagged below "
                f"{m.drift_p_value})."
            )
        elif r.method == "wasserstein":
            distance, name = max(null)
            lines.append(
                f"  Closest calls: largest distance of an unshifted test {distance:.3f} "
                f"(`{name}`), smallest of a moved feature {min(moved):.3f} (flagged from "
                f"{m.drift_distance})."
            )
        if r.sweep:
            below = {k: v for k, v in r.sweep.items() if v < DETECTION_TARGET}
            lines.append(
                f"  Each of the {features} features moved in turn (+0.5 sd, {s.sweep_windows} "
                f"windows each): flagged in {pct(sum(r.sweep.values()), len(r.sweep))} of "
                "windows; below 99%: "
                + (", ".join(f"`{k}` {v:.0%}" for k, v in sorted(below.items())) or "none")
                + "."
            )
    d = run.draws
    lines += [
        "",
        "What *the same distribution* means here. `demo`: the reference is the demo's own "
        "validation split (114 rows) and windows are bootstrap resamples of the whole data set "
        "(569 rows), the empirical distribution the split was drawn from. The reference's rows "
        "are themselves a fifth of that population and bootstrap windows repeat values (ties), "
        "both of which make the Kolmogorov-Smirnov test conservative. `small` and `large`: "
        "references of 114 and "
        f"{run.regimes[-1].reference_rows:,} rows drawn from the fitted mixture, windows drawn "
        "afresh from it (continuous, no shared rows).",
        "",
        "What a small reference does. With at most 1,000 reference rows a feature is tested by "
        f"Kolmogorov-Smirnov, {DEMO_VALIDATION_ROWS} reference values against the window's "
        f"{m.drift_sample:,} most recent ones. The window's side is close to the population, "
        "so the statistic mostly measures how far the 114 reference rows happen to lie from "
        "it: a feature the reference misrepresents is flagged in nearly every window, one it "
        "represents well in almost none. False alarms are therefore not independent across "
        "windows, and a rate over 100 windows describes one reference.",
    ]
    if d is not None and d.references:
        lines += [
            "",
            f"To see the spread, {d.references} further {d.rows}-row references were drawn "
            f"afresh from the mixture (seeds [{SEED}, 7, r]), each profiled by "
            "`validation_profiler` on the registered runtime and tested on "
            f"{d.windows} unshifted and {d.windows} shifted windows: "
            f"{d.persistent} of {d.references} had a feature flagged in every unshifted window "
            f"and {sum(1 for n in d.null_flagged if n == 0)} in none; "
            f"{pct(d.null_flags, d.null_tests)} of all feature tests were flagged "
            f"(nominal {m.drift_p_value:.0%}); dataset drift in "
            f"{d.null_detected}/{d.references * d.windows} unshifted windows; the shifted "
            f"feature was flagged in {d.shifted_hits}/{d.references * d.windows} shifted "
            f"windows, dataset drift in {d.shifted_detected}.",
        ]
    if run.narrow:
        headers = ["reference", "window rows", "test", "false alarms (dataset drift)",
                   "windows with a feature flagged", "feature tests flagged",
                   "shifted feature flagged", "dataset drift when shifted"]  # fmt: skip
        body = [
            [
                f"`{n.reference}`",
                f"{n.rows:,}",
                ", ".join(sorted(n.null.methods)),
                pct(n.null.detected, n.null.windows),
                pct(n.null.any_feature, n.null.windows),
                pct(sum(n.null.feature_flags.values()), n.null.feature_tests),
                pct(n.shifted_hits, n.shifted.windows),
                pct(n.shifted.detected, n.shifted.windows),
            ]
            for n in run.narrow
        ]
        lines += [
            "",
            "Smaller windows. Issue 16's figures are for 10,000-row windows, but the monitor "
            f"gives a verdict from `drift_min_rows` ({m.drift_min_rows}) answered predictions, "
            "and its 24 h window holds fewer than 10,000 for any model with less traffic. "
            f"{run.sizes.narrow_windows} unshifted and {run.sizes.narrow_windows} shifted "
            f"windows (`{run.regimes[0].shifted_feature}` +0.5 sd) per size, from the fitted "
            "mixture (seeds [16, 5, rows]):",
            "",
            *table(headers, body),
        ]
    return lines


def estimate_lines(run: Run) -> list[str]:
    headers = ["stream", "calibration rows", f"`{TILT_FEATURE}` moved", "mean confidence",
               "realised (mean)", "estimated (mean)", "bias", "abs error mean", "p95", "max",
               "uncalibrated: abs error mean / max"]  # fmt: skip
    body = []
    for e in run.estimates:
        x = e.summary()
        body.append(
            [
                e.name,
                f"{e.calibration_rows:,}",
                f"{x['moved_sd']:+.2f} sd",
                f"{x['confidence_mean']:.3f}",
                f"{x['realised_mean']:.2f}%",
                f"{x['estimated_mean']:.2f}%",
                f"{x['bias_pp']:+.2f} pp",
                f"{x['abs_error_mean_pp']:.2f} pp",
                f"{x['abs_error_p95_pp']:.2f} pp",
                f"{x['abs_error_max_pp']:.2f} pp",
                f"{x['uncalibrated_abs_error_mean_pp']:.2f} / "
                f"{x['uncalibrated_abs_error_max_pp']:.2f} pp",
            ]
        )
    concept = run.estimates[-1].summary()
    return [
        "### Label-free accuracy estimate",
        "",
        f"{run.sizes.windows} windows of {run.sizes.rows:,} rows per stream from the fitted "
        "mixture, each answered by the model's runtime. *Estimated*: `estimated_performance` "
        "over the window's confidence deciles per predicted label (what the rollups keep), "
        "each decile right at the rate `validation_profiler` measured on the labelled "
        f"reference rows (`large`, {run.regimes[-1].reference_rows:,} rows; and the `small` "
        f"reference's {DEMO_VALIDATION_ROWS}, the demo's validation size). *Realised*: accuracy "
        "from the true labels. The error is |estimated - realised| per window; the target is "
        "held against the largest. *Uncalibrated*: the same estimate for a version without a "
        "calibration (each answer right with its confidence), for comparison.",
        "",
        "Streams: *covariate* shifts keep or drop each drawn row by its inputs alone "
        "(rejection sampling), so P(class | inputs), and with it what a confidence means, "
        "stays what validation saw: towards larger "
        f"`{TILT_FEATURE}` keeps a row with probability min(1, exp(0.5 (z - 3))) of its "
        "z-score (exponential tilting: a normal feature's mean moves by +0.5 sd); more "
        "low-confidence cases keeps it with probability min(1, 0.1 + 2 (1 - confidence)). "
        "*Concept* shift keeps the inputs and changes the labels.",
        "",
        *table(headers, body),
        "",
        "Under concept shift the estimate cannot move: it reads only the model's confidences, "
        "which do not change when only the labels do. It stayed at "
        f"{concept['estimated_mean']:.2f}% while realised accuracy fell to "
        f"{concept['realised_mean']:.2f}%: the error is the accuracy lost. Only labelled "
        "feedback (the realised metrics and the performance row's `gap`) shows such a change. "
        "The demo data's bootstrap windows are not used for the estimate: 80% of those rows "
        "trained the model, which gets them nearly all right, so they are not a held-out "
        "stream.",
    ]


RECOVERY_SEEDS = 5
NO_RECOVERY = [
    "Retraining recovery: not measured in --quick runs (`benchmarks/retrain_recovery.py`).",
    "",
]


def retraining_recovery(seeds: int = RECOVERY_SEEDS) -> list[str]:
    """Recovery after a concept shift with the default PREDICTD_RETRAIN_RECENT_WEIGHT, through
    the real `retrain()` (benchmarks/retrain_recovery.py's scenario), one line per seed."""
    from benchmarks.retrain_recovery import measure_seeds, recovery
    from predictd.settings import RetrainingSettings

    weight = RetrainingSettings().recent_weight
    results = measure_seeds(seeds, [weight])
    shares = [recovery(r.before, r.after, r.retrained[f"{weight:g}"]) for r in results]
    lines = [
        "### Retraining recovery (target: at least 80% of the accuracy lost)",
        "",
        f"`benchmarks/retrain_recovery.py`'s concept shift (1,000 training rows; 500 unshifted "
        f"then 2,000 shifted requests, a quarter of those labelled), retrained by the real "
        f"`retrain()` with the default recent weight {weight:g}, scored on the shifted "
        f"requests without feedback; seeds 0-{seeds - 1}:",
        "",
        "| seed | before the shift | after it | after retraining | recovered |",
        "|---|---|---|---|---|",
    ]
    for seed, (r, share) in enumerate(zip(results, shares, strict=True)):
        retrained = r.retrained[f"{weight:g}"]
        lines.append(f"| {seed} | {r.before:.3f} | {r.after:.3f} | {retrained:.3f} | {share:.0%} |")
    lines += [
        "",
        f"Worst seed {min(shares):.0%}, mean {sum(shares) / len(shares):.0%}: "
        + ("met." if min(shares) >= 0.8 else "MISSED."),
        "The end-to-end test (`tests/loop/test_closed_loop.py`: two replicas on PostgreSQL, the "
        "agent's proposals approved over HTTP) measures the same on served traffic and asserts "
        "at least 80%.",
        "",
    ]
    return lines


def render(run: Run, command: str, code: str, recovery: list[str]) -> str:
    s, m = run.sizes, run.settings
    lines = [
        "## G. Loop quality: drift false alarms and detection, the label-free accuracy estimate",
        "",
        f"- **Date:** {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (run took {run.seconds:.0f} s)",
        f"- **Command:** `{command}`",
        f"- **Code:** {code}",
        f"- **Python:** {platform.python_version()}; "
        + ", ".join(f"{p} {_version(p)}" for p in ("numpy", "scipy", "scikit-learn")),
        f"- **Sizes and seeds:** {s.windows} windows of {s.rows:,} rows per stream; streams "
        f"seeded from {SEED} (numpy `default_rng`); the model is the demo's, "
        f"`train_tabular(seed={MODEL_SEED})` (RandomForest, breast-cancer data, 30 features; "
        f"held-out accuracy {run.model_metrics['accuracy']:.3f}).",
        f"- **Monitor settings:** `MonitoringSettings()` defaults: drift_share {m.drift_share}, "
        f"drift_p_value {m.drift_p_value}, drift_distance {m.drift_distance}, drift_min_rows "
        f"{m.drift_min_rows}, drift_sample {m.drift_sample:,}, drift_max_values "
        f"{m.drift_max_values:,} (every row is counted at this window size, none sampled).",
        "",
        *recovery,
        "How: each version is made by `ModelRegistry.inspect` with "
        "`monitoring.profile.validation_profiler`, as `predictd models register --validation` "
        "makes it (reference profile and calibration). Each window is judged by the monitor's "
        "own `DriftService._measure` and `PerformanceService._measure`, their repositories' "
        "reads answered from the window's rows in memory: every feature counted into the "
        "reference's bins (numpy `searchsorted(side=\"right\")`, what PostgreSQL's "
        "`width_bucket` counts), the most recent `drift_sample` values for the KS test, the "
        "confusion counts and the rollups' confidence deciles.",
        "",
    ]
    if run.postgres:
        same = sum(not c["differing"] for c in run.postgres)
        lines += [
            f"To show that these are the database's figures, {len(run.postgres)} windows of "
            f"{s.rows:,} rows were also written to a fresh PostgreSQL database "
            "(`PredictionWriter`, labels by `FeedbackService`) and run through "
            "`DriftService.run` and `PerformanceService.run`: "
            f"{same} of {len(run.postgres)} gave the same bin counts, statistics, p-values, "
            "verdicts, realised and estimated accuracy as in memory.",
            "",
        ]
        headers = ["window", "reference", "rows", "features drifted", "dataset drift",
                   "realised", "estimated", "differs from in-memory"]  # fmt: skip
        lines += table(
            headers,
            [
                [
                    str(c["window"]),
                    f"`{c['reference']}`",
                    f"{c['rows']:,}",
                    str(c["features_drifted"]),
                    str(c["drift_detected"]),
                    f"{100 * c['realised']:.2f}%",
                    f"{100 * c['estimated']:.2f}%",
                    ", ".join(c["differing"]) or "nothing",
                ]
                for c in run.postgres
            ],
        )
    else:
        lines.append("(No PostgreSQL check in this run.)")
    lines += ["", *drift_lines(run), "", *estimate_lines(run), "", "### Verdicts", ""]
    lines += table(["check", "target", "measured", "verdict"], verdicts(run))
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def write_section(path: Path, body: str) -> None:
    """Replace (or add, before the "Targets" table) this part's section of RESULTS.md,
    keeping every other section's text and order."""
    sections = split_sections(path.read_text()) if path.exists() else None
    sections = dict(sections or {})
    if SECTION not in sections:
        targets = sections.pop("targets", None)
        sections[SECTION] = body
        if targets is not None:
            sections["targets"] = targets
    sections[SECTION] = body
    text = "".join(f"<!-- results:{k} -->\n{v.rstrip()}\n\n" for k, v in sections.items())
    path.write_text(text.rstrip() + "\n")


def to_json(run: Run) -> dict[str, Any]:
    regimes = [
        {
            "name": r.name,
            "reference_rows": r.reference_rows,
            "method": r.method,
            "shifted_feature": r.shifted_feature,
            "shift": r.shift,
            "false_alarm_rate": r.null.detected / r.null.windows,
            "null_any_feature_rate": r.null.any_feature / r.null.windows,
            "null_feature_flags": dict(r.null.feature_flags),
            "null_feature_test_rate": sum(r.null.feature_flags.values()) / r.null.feature_tests,
            "feature_detection_rate": r.shifted_hits / r.shifted.windows,
            "dataset_detection_rate": r.shifted.detected / r.shifted.windows,
            "sweep": r.sweep,
        }
        for r in run.regimes
    ]
    estimates = [
        {"name": e.name, "calibration_rows": e.calibration_rows, **e.summary()}
        for e in run.estimates
    ]
    draws = None if run.draws is None else asdict(run.draws)
    narrow = [
        {
            "reference": n.reference,
            "rows": n.rows,
            "false_alarm_rate": n.null.detected / n.null.windows,
            "null_any_feature_rate": n.null.any_feature / n.null.windows,
            "null_feature_test_rate": sum(n.null.feature_flags.values()) / n.null.feature_tests,
            "feature_detection_rate": n.shifted_hits / n.shifted.windows,
            "dataset_detection_rate": n.shifted.detected / n.shifted.windows,
        }
        for n in run.narrow
    ]
    return {
        "sizes": asdict(run.sizes),
        "seconds": run.seconds,
        "regimes": regimes,
        "reference_draws": draws,
        "narrow_windows": narrow,
        "estimates": estimates,
        "postgres": run.postgres,
        "verdicts": verdicts(run),
    }


ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"smoke sizes: {QUICK}")
    p.add_argument(
        "--postgres",
        metavar="URL",
        help="an empty PostgreSQL database in which to repeat a few windows through the real "
        "DriftService and PerformanceService (default for a full run: a fresh database made "
        "on --postgres-admin and dropped afterwards; --quick: none)",
    )
    p.add_argument("--postgres-admin", metavar="URL", default=ADMIN_URL)
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL check")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument(
        "--results",
        type=Path,
        help=f"refresh part G in this file (default {RESULTS} for a full run, none for --quick)",
    )
    p.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    args = p.parse_args(argv)
    if args.results is None and not args.quick and not args.no_results:
        args.results = RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    from benchmarks.environment import Postgres, code_version

    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    shown = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m benchmarks.loop_quality", *shown])
    code, digest = code_version(Path(__file__).resolve().parent.parent)
    admin = None
    url = None if args.no_postgres else args.postgres
    if url is None and not args.no_postgres and not args.quick:
        admin = Postgres(args.postgres_admin)
        url = admin.create_database("loop")
    try:
        with tempfile.TemporaryDirectory(prefix="loop-quality-") as tmp:
            run = asyncio.run(measure(sizes, Path(tmp), url))
    finally:
        if admin is not None:
            admin.drop_all()
    recovery = NO_RECOVERY if args.quick else retraining_recovery()
    body = render(run, command, f"{code}, src/ digest {digest}", recovery)
    print(body)
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(run), indent=2, default=str))
    if args.results is not None:
        write_section(args.results, body)
    return 0 if all(not c["differing"] for c in run.postgres) else 1


if __name__ == "__main__":
    sys.exit(main())
