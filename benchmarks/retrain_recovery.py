"""How PREDICTD_RETRAIN_RECENT_WEIGHT was chosen: the share of the accuracy a concept shift took
that `predictd train` wins back, per recent weight.

The scenario (fixed seeds; the generator is importable, and the end-to-end test serves it):

* a tabular classifier, StandardScaler + LogisticRegression, is fitted on ``base_rows`` rows
  with 4 standard-normal features x0..x3, labelled ``x0 + x1 > 0`` (5% of labels flipped),
  and registered as production with those rows as its training data;
* then traffic: ``before`` rows from the same distribution (no feedback), and ``after`` rows
  whose inputs have shifted (x0 by +1, x2 by +0.5) and whose true labels follow a changed
  rule, ``x0 - x1 > 1`` (5% flipped); feedback arrives for a ``feedback`` share of those;
* ``predictd train`` (``retrain()``, the real service, on a fresh SQLite database in a temporary
  directory) fits a candidate per weight on the base rows (weight 1) plus the labelled
  shifted rows (the newest 20% held out).

Accuracy is measured on the stream: before the shift (production on the pre-shift rows), after
it (production on the shifted rows without feedback) and after retraining (the candidate on
those same rows); recovery = (retrained - after) / (before - after). A second table runs the
same with the inputs shifted but the labels keeping the old rule: what a weight costs when
there is nothing to win back. Run with
``.venv/bin/python benchmarks/retrain_recovery.py [--seeds 5] [--weights 1 5 10 20 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("x0", "x1", "x2", "x3")
MODEL = "shifty"


@dataclass(frozen=True)
class Scenario:
    seed: int = 0
    base_rows: int = 1000
    before: int = 500  # stream rows before the shift (no feedback)
    after: int = 2000  # stream rows after it
    feedback: float = 0.25  # share of the shifted rows whose true label is sent back
    noise: float = 0.05  # share of labels flipped
    concept_shift: bool = True  # False: the inputs shift, the labels keep the old rule


@dataclass(frozen=True)
class StreamRow:
    features: dict[str, float]
    label: int  # the true label
    shifted: bool
    labelled: bool  # feedback is sent for it


def _rows(
    rng: np.random.Generator, n: int, shifted: bool, noise: float, concept: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, (n, len(FEATURES)))
    if shifted:
        x[:, 0] += 1.0
        x[:, 2] += 0.5
    if shifted and concept:
        y = (x[:, 0] - x[:, 1] > 1.0).astype(int)
    else:
        y = (x[:, 0] + x[:, 1] > 0.0).astype(int)
    flip = rng.random(n) < noise
    return x, np.where(flip, 1 - y, y)


def _named(row: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURES, row, strict=True)}


def base_training_set(s: Scenario) -> list[tuple[dict[str, float], int]]:
    """The rows production was fitted on (the registered training data)."""
    x, y = _rows(np.random.default_rng([s.seed, 1]), s.base_rows, False, s.noise)
    return [(_named(row), int(label)) for row, label in zip(x, y, strict=True)]


def shifted_stream(s: Scenario) -> list[StreamRow]:
    """The traffic in time order: ``before`` unshifted rows, then ``after`` shifted ones, a
    ``feedback`` share of which are labelled."""
    rng = np.random.default_rng([s.seed, 2])
    x1, y1 = _rows(rng, s.before, False, s.noise)
    x2, y2 = _rows(rng, s.after, True, s.noise, s.concept_shift)
    labelled = rng.random(s.after) < s.feedback
    return [
        StreamRow(_named(row), int(label), False, False) for row, label in zip(x1, y1, strict=True)
    ] + [
        StreamRow(_named(row), int(label), True, bool(flag))
        for row, label, flag in zip(x2, y2, labelled, strict=True)
    ]


def production_model(s: Scenario) -> Any:
    """The production estimator, fitted on the base training set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rows = base_training_set(s)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    model.fit(_matrix([f for f, _ in rows]), [y for _, y in rows])
    return model


def write_artifacts(s: Scenario, out: Path) -> tuple[Path, Path]:
    """The production model as a skops file and its training data as CSV."""
    from skops.io import dump

    out.mkdir(parents=True, exist_ok=True)
    artifact, data = out / f"{MODEL}.skops", out / f"{MODEL}-train.csv"
    dump(production_model(s), artifact)
    lines = [",".join((*FEATURES, "label"))]
    lines += [",".join([*(repr(f[n]) for n in FEATURES), str(y)]) for f, y in base_training_set(s)]
    data.write_text("\n".join(lines) + "\n")
    return artifact, data


def _matrix(rows: Sequence[dict[str, float]]) -> np.ndarray:
    return np.asarray([[r[n] for n in FEATURES] for r in rows], dtype=np.float64)


def accuracy(model: Any, rows: Sequence[StreamRow]) -> float:
    predicted = model.predict(_matrix([r.features for r in rows]))
    return float(np.mean(predicted == np.asarray([r.label for r in rows])))


def recovery(before: float, after: float, retrained: float) -> float:
    """The share of the accuracy lost to the shift that retraining won back."""
    return (retrained - after) / (before - after)


@dataclass(frozen=True)
class Measured:
    before: float
    after: float
    retrained: dict[str, float]  # per weight ("no base data" too)


async def measure(s: Scenario, weights: Sequence[float], root: Path) -> Measured:
    """Register, record the stream with feedback, retrain per weight, score on the stream."""
    from predictd.db import migrate
    from predictd.db.engine import Database
    from predictd.inference.values import RequestContext, build_record
    from predictd.monitoring.feedback import FeedbackItem, FeedbackService
    from predictd.recording.repository import PredictionWriter
    from predictd.registry.datasets import DatasetFile
    from predictd.registry.service import ModelRegistry
    from predictd.retraining import RetrainOptions, retrain
    from predictd.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{root / 'bench.db'}", artifact_dir=root / "artifacts"
    )
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        artifact, data = write_artifacts(s, root / "model")
        version = await registry.register(
            await asyncio.to_thread(
                registry.inspect, artifact, MODEL, training_data=DatasetFile(data)
            )
        )
        runtime = await asyncio.to_thread(registry.open_runtime, version, source="bench")
        stream = shifted_stream(s)
        answers = runtime.predict([r.features for r in stream])
        start = datetime.now(UTC) - timedelta(hours=1)
        meta = runtime.meta
        records = [
            build_record(
                meta,
                row.features,
                out,
                uuid.uuid4(),
                start + timedelta(seconds=n),
                RequestContext(),
                batch_id=None,
                latency_ms=1.0,
                variant="production",
            )
            for n, (row, out) in enumerate(zip(stream, answers, strict=True))
        ]
        await PredictionWriter(db).write(records)
        await FeedbackService(db).submit(
            [
                FeedbackItem(record.id, row.label)
                for record, row in zip(records, stream, strict=True)
                if row.labelled
            ]
        )
        production = await asyncio.to_thread(registry.open_estimator, version)
        evaluated = [r for r in stream if r.shifted and not r.labelled]
        before = accuracy(production, [r for r in stream if not r.shifted])
        after = accuracy(production, evaluated)
        retrained: dict[str, float] = {}
        runs: list[tuple[str, dict[str, Any]]] = [(f"{w:g}", {"recent_weight": w}) for w in weights]
        runs.append(("no base data", {"base_data": False}))
        for name, overrides in runs:
            options = RetrainOptions.from_settings(
                MODEL,
                settings.retraining,
                since=timedelta(days=1),
                min_labelled=50,
                **overrides,
            )
            result = await retrain(db, registry, options, progress=lambda _: None)
            candidate = await asyncio.to_thread(registry.open_estimator, result.version)
            retrained[name] = accuracy(candidate, evaluated)
        return Measured(before, after, retrained)
    finally:
        await db.dispose()


def measure_seeds(seeds: int, weights: Sequence[float], concept: bool = True) -> list[Measured]:
    """``measure`` for seeds 0 .. seeds-1, each in its own scratch database and store."""
    results = []
    for seed in range(seeds):
        scenario = Scenario(seed=seed, concept_shift=concept)
        with tempfile.TemporaryDirectory(prefix="predictd-recovery-") as tmp:
            results.append(asyncio.run(measure(scenario, weights, Path(tmp))))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[1, 2, 5, 10, 20, 30, 50])
    args = parser.parse_args(argv)
    for concept in (True, False):
        results = measure_seeds(args.seeds, args.weights, concept)
        for seed, r in enumerate(results):
            print(
                f"seed {seed}: accuracy before the shift {r.before:.3f}, after {r.after:.3f}",
                file=sys.stderr,
            )
        before = statistics.mean(r.before for r in results)
        after = statistics.mean(r.after for r in results)
        if concept:
            print(
                f"Concept shift: accuracy before it {before:.3f}, after it {after:.3f} (means "
                f"over {len(results)} seeds)\n"
            )
            print("| recent weight | accuracy after retraining | recovery mean | recovery min |")
            print("|---|---|---|---|")
            for name in results[0].retrained:
                shares = [recovery(r.before, r.after, r.retrained[name]) for r in results]
                mean_acc = statistics.mean(r.retrained[name] for r in results)
                print(
                    f"| {name} | {mean_acc:.3f} | {statistics.mean(shares):.2f} | "
                    f"{min(shares):.2f} |"
                )
        else:
            print(
                f"\nInputs shifted, labels by the old rule (what a weight costs when there is "
                f"nothing to recover): production {after:.3f} on the shifted rows\n"
            )
            print("| recent weight | accuracy after retraining | change |")
            print("|---|---|---|")
            for name in results[0].retrained:
                mean_acc = statistics.mean(r.retrained[name] for r in results)
                print(f"| {name} | {mean_acc:.3f} | {mean_acc - after:+.3f} |")


if __name__ == "__main__":
    main()
