"""Part E: drift reports over 1,000,000 current rows per model.

A fresh database (migrated by ``predictd.db.migrate``) holds two registered models with a
reference profile each, built by ``predictd.monitoring.profile.reference_profile`` from 5,000
validation inputs and the model's own answers to them:

* ``text``: the demo sentiment model (``train_sentiment``), inputs ``{"text": ...}`` drawn
  from the demo data set's sentences; its features are the text's length and (the model's
  own analyzer) token frequencies and the out-of-vocabulary share;
* ``tabular``: the demo breast-cancer model (``train_tabular``), 30 numeric features drawn
  from each class's multivariate normal fitted to the breast-cancer data.

``--drift-rows`` predictions per model in the 24 h before the load (the window every report
covers) and as many again, split between the two, in the 24 h before that (outside the
window), every row answered by the real model. In the window's last hours part of the
traffic shifts: longer texts, and 18 of the 30 features moved by 1.5 standard deviations.
Rows and rollups are loaded by part D's machinery (``analytics.load_source``: the writer's
``_copy_tuple`` and ``rollup``/``rows_of``, COPY, the hourly tier, VACUUM (ANALYZE)).

Then ``DriftService(db, settings.monitoring, registry.vocabulary).run(24 h, model=name)``
(as the server and ``predictd drift run`` build it) is timed end to end, report stored,
a few times per model with no warm-up; for the tabular model also with sampling disabled
(``drift_max_values`` past rows x features), to compare the sampled counts with the exact
ones. The text model's bin counts are checked against a GROUP BY over the raw rows and
against the generator's own tally.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2

from benchmarks.analytics import EPOCH, Check, LoadResult, load_source, uuid7
from benchmarks.environment import Postgres, wait_until_quiet
from benchmarks.report import Verdict, table
from predictd.db.engine import Database
from predictd.demo.train import load_sentiment_data, train_tabular
from predictd.inference.formats import open_artifact
from predictd.inference.runtime import ModelRuntime, Prediction
from predictd.monitoring.drift import DriftService
from predictd.monitoring.profile import reference_profile
from predictd.recording.prediction_record import PredictionRecord
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings

TARGET_P50_MS = 2_000.0
WINDOW = timedelta(hours=24)
RUNS = 5  # timed reports per model, no warm-up
EXACT_RUNS = 3  # the tabular model with sampling disabled
EXACT_MAX_VALUES = 100_000_000  # drift_max_values past rows x features: every row counted
REFERENCE_ROWS = 5_000
CHUNK_ROWS = 50_000  # rows generated and COPY'd at a time (whole minutes, about this many)
TEXT, TABULAR = "text", "tabular"
SHIFT_SPAN = timedelta(hours=8)  # the window's last hours: part of the traffic shifts
TEXT_JOINED = 0.5  # of the text rows in SHIFT_SPAN: two sentences joined into one input
SHIFTED_FEATURES = 18  # of the tabular model's 30, a seeded choice
SHIFT_SD = 1.5  # how far they move, in the feature's standard deviations
MAX_SHARE_GAP = 0.01  # sampled vs exact: every bin's share of its feature within 1 pp
ERROR_RATE = 0.003
SEED = 0
AGENTS = ("python-httpx/0.28.1", "Go-http-client/1.1", "okhttp/4.12.0")

# -- the two models and their traffic ------------------------------------------------------


class Models:
    """The demo models' runtimes (answers) and where the synthetic inputs come from."""

    def __init__(self, text_path: Path, work: Path, settings: Settings) -> None:
        from sklearn.datasets import load_breast_cancer

        tabular = train_tabular(work / "tabular")
        assert tabular.feature_names is not None
        self.paths = {TEXT: text_path, TABULAR: tabular.path}
        self.feature_names: tuple[str, ...] = tabular.feature_names
        self.runtimes: dict[str, ModelRuntime] = {
            name: open_artifact(path, settings.inference)[1] for name, path in self.paths.items()
        }
        self.texts = load_sentiment_data()[0]
        data = load_breast_cancer()
        x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
        self.benign_share = float(y.mean())
        self.classes = [(x[y == k].mean(axis=0), np.cov(x[y == k], rowvar=False)) for k in (0, 1)]
        self.sd = x.std(axis=0)
        chosen = np.random.default_rng(SEED).choice(x.shape[1], SHIFTED_FEATURES, replace=False)
        self.shifted_features = sorted(int(i) for i in chosen)
        self._memo: dict[str, Prediction] = {}

    def features(self, rng: np.random.Generator, n: int, shifted: np.ndarray | None) -> np.ndarray:
        """``n`` rows of 30 features: a class drawn at the data's rate, then that class's
        multivariate normal; ``shifted`` rows move ``SHIFTED_FEATURES`` of them."""
        benign = rng.random(n) < self.benign_share
        rows = np.empty((n, len(self.feature_names)))
        for k, (mean, cov) in enumerate(self.classes):
            picked = np.flatnonzero(benign == bool(k))
            rows[picked] = rng.multivariate_normal(mean, cov, size=len(picked))
        if shifted is not None and shifted.any():
            moved = np.asarray(self.shifted_features, dtype=np.int64)
            rows[np.ix_(np.flatnonzero(shifted), moved)] += SHIFT_SD * self.sd[moved]
        return rows.round(6)

    def named(self, rows: np.ndarray) -> list[dict[str, float]]:
        return [dict(zip(self.feature_names, r, strict=True)) for r in rows.tolist()]

    def answer_features(self, rows: np.ndarray) -> list[Prediction]:
        runtime = self.runtimes[TABULAR]  # positional: its inputs are named x0..x29
        names = runtime.meta.feature_names
        return runtime.predict([dict(zip(names, r, strict=True)) for r in rows.tolist()])

    def answer_texts(self, texts: Sequence[str]) -> list[Prediction]:
        """The text model's answers, each distinct text predicted once."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            answers = self.runtimes[TEXT].predict(missing)
            self._memo.update(zip(missing, answers, strict=True))
        return [self._memo[t] for t in texts]

    def reference(self, name: str) -> tuple[dict[str, Any], list[Any]]:
        """(reference profile, its inputs): ``REFERENCE_ROWS`` validation inputs and the
        model's answers to them, unshifted (and, for the text model, its token frequencies
        by its own analyzer, as ``ModelRegistry`` profiles validation data)."""
        rng = np.random.default_rng(SEED + 1)
        inputs: list[Any]
        if name == TEXT:
            texts = [self.texts[i] for i in rng.integers(0, len(self.texts), REFERENCE_ROWS)]
            inputs, answers = texts, self.answer_texts(texts)
        else:
            rows = self.features(rng, REFERENCE_ROWS, None)
            inputs, answers = self.named(rows), self.answer_features(rows)
        profile = reference_profile(
            inputs,
            [a.label for a in answers],
            [a.confidence for a in answers],
            self.runtimes[name].vocabulary(),  # the text model's analyzer, as the registry does
        )
        return profile, inputs


class DriftTraffic:
    """``rows`` predictions per model over the ``WINDOW`` before ``end`` and ``rows`` more,
    half each, over the ``WINDOW`` before that; seeded, in time order, a chunk of whole minutes
    at a time. Tallies the text model's answered rows in the window per reference bin of
    text length, as the generator made them (for the correctness check)."""

    def __init__(self, models: Models, rows: int, end: datetime, text_edges: list[float]) -> None:
        self.models, self.end = models, end
        self.start = end - 2 * WINDOW
        self.rng = np.random.default_rng(SEED)
        self.py = random.Random(SEED)
        minutes = int(2 * WINDOW.total_seconds()) // 60
        half = minutes // 2
        self.per_minute = {
            name: np.concatenate(
                [
                    self.rng.multinomial(rows // 2, np.full(half, 1 / half)),
                    self.rng.multinomial(rows, np.full(half, 1 / half)),
                ]
            )
            for name in (TEXT, TABULAR)
        }
        total = self.per_minute[TEXT] + self.per_minute[TABULAR]
        ends = np.searchsorted(np.cumsum(total), np.arange(CHUNK_ROWS, total.sum(), CHUNK_ROWS))
        bounds = [0, *sorted({int(e) + 1 for e in ends if int(e) + 1 < minutes}), minutes]
        self.chunks = list(itertools.pairwise(bounds))
        self.start_us = int((self.start - EPOCH).total_seconds()) * 1_000_000
        self.window_us = self.start_us + int(WINDOW.total_seconds()) * 1_000_000
        self.shift_us = int((end - SHIFT_SPAN - EPOCH).total_seconds()) * 1_000_000
        self.text_edges = text_edges
        self.text_counts = np.zeros(len(text_edges) + 1, dtype=np.int64)
        self.answered = {TEXT: 0, TABULAR: 0}  # status 'ok' rows in the window
        self._seq = self.py.getrandbits(40)

    @property
    def rows(self) -> int:
        return int(sum(int(counts.sum()) for counts in self.per_minute.values()))

    def chunk(self, index: int) -> list[PredictionRecord]:
        m0, m1 = self.chunks[index]
        minute_us = self.start_us + np.arange(m0, m1, dtype=np.int64) * 60_000_000
        out: list[PredictionRecord] = []
        for name in (TEXT, TABULAR):
            counts = self.per_minute[name][m0:m1]
            n = int(counts.sum())
            ts_us = np.sort(np.repeat(minute_us, counts) + self.rng.integers(0, 60_000_000, n))
            shifted = ts_us >= self.shift_us
            ok = self.rng.random(n) >= ERROR_RATE
            inputs: list[Any]
            if name == TEXT:
                texts = self._texts(n, shifted)
                answers = self.models.answer_texts(texts)
                inputs = [{"text": t} for t in texts]
                current = ok & (ts_us >= self.window_us)
                lengths = [len(t) for t, c in zip(texts, current.tolist(), strict=True) if c]
                bins = np.searchsorted(self.text_edges, lengths, side="right")
                self.text_counts += np.bincount(bins, minlength=len(self.text_counts))
            else:
                rows = self.models.features(self.rng, n, shifted)
                answers = self.models.answer_features(rows)
                inputs = [{"features": f} for f in self.models.named(rows)]
            self.answered[name] += int((ok & (ts_us >= self.window_us)).sum())
            latency = np.exp(self.rng.normal(1.0, 0.5, n)).round(4).tolist()
            out += self._records(name, ts_us.tolist(), inputs, answers, ok.tolist(), latency)
        out.sort(key=lambda r: r.ts)
        for r in out:  # ids in time order, like the server's
            self._seq += 1
            r.id = uuid7(int(r.ts.timestamp() * 1000), self._seq)
        return out

    def _texts(self, n: int, shifted: np.ndarray) -> list[str]:
        texts, py = self.models.texts, self.py
        joined = shifted & (self.rng.random(n) < TEXT_JOINED)
        return [
            f"{texts[py.randrange(len(texts))]} {texts[py.randrange(len(texts))]}"
            if j
            else texts[py.randrange(len(texts))]
            for j in joined.tolist()
        ]

    def _records(
        self,
        name: str,
        ts_us: list[int],
        inputs: list[Any],
        answers: list[Prediction],
        ok: list[bool],
        latency: list[float],
    ) -> list[PredictionRecord]:
        py = self.py
        return [
            PredictionRecord(
                id=uuid7(0, 0),  # set once the chunk is in time order
                ts=EPOCH + timedelta(microseconds=us),
                model_name=name,
                model_version=1,
                variant="production",
                request_id=f"{py.getrandbits(128):032x}",
                batch_id=None,
                input=payload,
                output=answer.label if good else None,
                confidence=answer.confidence if good else None,
                probabilities=answer.probabilities if good else None,
                latency_ms=ms,
                cache_hit=False,
                status="ok" if good else "error",
                error=None if good else "TimeoutError: model took too long",
                client_ip=f"10.0.{py.randrange(256)}.7",
                user_agent=AGENTS[py.randrange(len(AGENTS))],
            )
            for us, payload, answer, good, ms in zip(
                ts_us, inputs, answers, ok, latency, strict=True
            )
        ]


# -- results ------------------------------------------------------------------------------


@dataclass
class Runs:
    """Timed ``DriftService.run`` calls for one model with one ``drift_max_values``."""

    model: str
    max_values: int
    samples_ms: list[float]
    reports: list[dict[str, Any]]  # each call's report

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def max(self) -> float:
        return max(self.samples_ms)

    @property
    def report(self) -> dict[str, Any]:
        return self.reports[-1]

    def counted(self) -> list[int]:
        """Rows counted per call (the first feature's; every row has every feature)."""
        return [next(iter(r["features"].values()))["rows"] for r in self.reports]


@dataclass
class DriftResults:
    load: LoadResult
    rows: int  # current rows per model
    end: datetime
    features: dict[str, int]  # numeric features counted by the database, per model
    reference_rows: dict[str, int]
    answered: dict[str, int]  # status 'ok' rows in the window, per model, as generated
    shifted_features: list[str]
    runs: list[Runs] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    max_share_gap: float = float("nan")  # sampled vs exact, any feature's bin, any run
    # The text model's rows per text-length bin: straight from SQL, and as generated.
    text_bins: dict[str, list[int]] = field(default_factory=dict)

    def find(self, model: str, exact: bool = False) -> Runs | None:
        want = [r for r in self.runs if r.model == model]
        return next((r for r in want if (r.max_values == EXACT_MAX_VALUES) == exact), None)


# -- the part -----------------------------------------------------------------------------


def _settings(url: str, work: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=url, artifact_dir=work / "artifacts", **overrides)


async def _register(settings: Settings, models: Models, profiles: Mapping[str, Any]) -> None:
    db = Database(settings.database)
    try:
        registry = ModelRegistry(settings.inference, db)
        for name, path in models.paths.items():
            names = models.feature_names if name == TABULAR else None
            candidate = registry.inspect(path, name, feature_names=names)
            await registry.register(replace(candidate, reference_profile=profiles[name]))
    finally:
        await db.dispose()


async def _time(settings: Settings, model: str, runs: int, end: datetime) -> Runs:
    """``runs`` reports, each timed from the call to its return (measured and stored). The
    service gets the registry's vocabularies, as the server and `predictd drift run` do."""
    db = Database(settings.database)
    vocabularies = ModelRegistry(settings.inference, db).vocabulary
    service = DriftService(db, settings.monitoring, vocabularies)
    samples, reports = [], []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            (report,) = await service.run(WINDOW, model=model, now=end)
            samples.append(1000 * (time.perf_counter() - t0))
            if report["status"] != "ok":  # no verdict: the scenario is broken, not slow
                raise RuntimeError(f"{model}: drift report {report['status']}: {report['message']}")
            reports.append(report)
    finally:
        await db.dispose()
    return Runs(model, settings.monitoring.drift_max_values, samples, reports)


RAW_TEXT_BINS = """
SELECT coalesce(width_bucket(length(input->>'text')::float8, %(edges)s::float8[]), -1),
       count(*)
FROM predictions
WHERE model_name = %(model)s AND model_version = 1 AND status = 'ok'
  AND ts >= %(start)s AND ts < %(end)s
GROUP BY 1
"""


def _raw_text_bins(url: str, edges: list[float], end: datetime) -> list[int]:
    """The text model's rows per reference bin of text length, straight from
    ``predictions`` (a row without text would be -1: none expected)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            params = {"edges": edges, "model": TEXT, "start": end - WINDOW, "end": end}
            cur.execute(RAW_TEXT_BINS, params)
            found = dict(cur.fetchall())
    finally:
        conn.close()
    counts = [int(found.pop(i, 0)) for i in range(len(edges) + 1)]
    return counts + ([-1] if found else [])  # a bin outside the range fails the check


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def compare(res: DriftResults) -> None:
    text = res.find(TEXT)
    sampled, exact = res.find(TABULAR), res.find(TABULAR, exact=True)
    if sampled is not None and exact is not None:
        gaps = [
            abs(a - b)
            for report in sampled.reports
            for name, feature in report["features"].items()
            for a, b in zip(
                _shares(feature["counts"]),
                _shares(exact.report["features"][name]["counts"]),
                strict=True,
            )
        ]
        res.max_share_gap = max(gaps)
        verdicts = {r["drift_detected"] for r in sampled.reports}
        drifted = [
            sum(bool(f.get("drifted")) for f in r["features"].values())
            for r in (*sampled.reports, exact.report)
        ]
        same = verdicts == {exact.report["drift_detected"]}
        res.checks.append(
            Check(
                "sampled = exact, tabular",
                same and res.max_share_gap < MAX_SHARE_GAP,
                f"drift_detected {sorted(verdicts)} sampled ({len(sampled.reports)} runs) vs "
                f"{exact.report['drift_detected']} exact; features drifted "
                f"{'/'.join(map(str, drifted[:-1]))} sampled vs {drifted[-1]} exact; largest "
                f"bin share gap {100 * res.max_share_gap:.2f} pp",
            )
        )
    if text is not None:
        feature = text.report["features"]["text_length"]
        counts = [int(c) for c in feature["counts"]]
        raw, generated = res.text_bins.get("raw", []), res.text_bins.get("generated", [])
        res.checks.append(
            Check(
                "text_length counts = raw rows",
                counts == raw == generated and feature["rows"] == res.answered[TEXT],
                f"{len(counts)} bins, {sum(counts):,} rows counted by the report, "
                f"{sum(raw):,} by the GROUP BY, {sum(generated):,} as generated"
                + ("" if counts == raw else f"; report {counts} != raw {raw}")
                + ("" if raw == generated else f"; raw {raw} != generated {generated}"),
            )
        )


def run_drift(args: argparse.Namespace, pg: Postgres, model: Path, work: Path) -> DriftResults:
    rows = args.drift_rows
    url = pg.create_database("drift")
    base = _settings(url, work)
    models = Models(model, work, base)
    profiles = {name: models.reference(name)[0] for name in (TEXT, TABULAR)}
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    text_edges = [float(e) for e in profiles[TEXT]["text_length"]["edges"]]
    traffic = DriftTraffic(models, rows, end, text_edges)
    print(f"[E] drift: loading {rows:,} rows per model in the last 24 h, {rows:,} before")
    loaded = load_source(pg, url, traffic, traffic.rows)
    print(
        f"    {loaded.seconds:.0f} s, {loaded.rate:,.0f} rows/s, {loaded.rollup_rows:,} rollup "
        f"rows; VACUUM ANALYZE {loaded.analyze_s:.0f} s; {loaded.table_mb:,.0f} MB"
    )
    asyncio.run(_register(base, models, profiles))
    pg.execute("VACUUM (ANALYZE) model_versions", url)
    names = models.feature_names
    res = DriftResults(
        loaded,
        rows,
        end,
        features={TEXT: 1, TABULAR: len(names)},
        reference_rows={TEXT: REFERENCE_ROWS, TABULAR: REFERENCE_ROWS},
        answered=dict(traffic.answered),
        shifted_features=[names[i] for i in models.shifted_features],
    )
    for name in (TEXT, TABULAR):
        wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
        runs = asyncio.run(_time(base, name, RUNS, end))
        res.runs.append(runs)
        print(f"    {name}: p50 {runs.p50:,.0f} ms, max {runs.max:,.0f} ms ({_summary(runs)})")
    wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
    exact = _settings(url, work, drift_max_values=EXACT_MAX_VALUES)
    runs = asyncio.run(_time(exact, TABULAR, EXACT_RUNS, end))
    res.runs.append(runs)
    print(f"    {TABULAR}, exact: p50 {runs.p50:,.0f} ms, max {runs.max:,.0f} ms")
    res.text_bins = {
        "raw": _raw_text_bins(url, text_edges, end),
        "generated": [int(c) for c in traffic.text_counts],
    }
    compare(res)
    for c in res.checks:
        print(f"    {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})")
    return res


def _summary(runs: Runs) -> str:
    r = runs.report
    counted = runs.counted()
    return (
        f"{r['rows']:,} rows, counted {min(counted):,}-{max(counted):,}; "
        f"drift_detected {r['drift_detected']}"
    )


# -- the report ---------------------------------------------------------------------------


def _outputs_moved(report: Mapping[str, Any]) -> str:
    moved = [k for k, o in (report.get("outputs") or {}).items() if o.get("drifted")]
    return ", ".join(moved) or "none"


def timing_table(res: DriftResults) -> list[str]:
    rows = []
    for runs in res.runs:
        report = runs.report
        counted = runs.counted()
        share = [c / report["rows"] for c in counted] if report["rows"] else [0.0]
        features = report["features"]
        rows.append(
            [
                runs.model,
                f"{len(features)} ({', '.join(_tested(runs))})"
                if runs.model == TEXT
                else str(len(features)),
                f"{report['rows']:,}",
                f"{runs.max_values:,}",
                _span(counted, share),
                str(len(runs.samples_ms)),
                f"{runs.p50:,.0f}",
                f"{runs.max:,.0f}",
                ", ".join(f"{s:,.0f}" for s in runs.samples_ms),
                str(report["drift_detected"]),
                f"{sum(bool(f.get('drifted')) for f in features.values())}/{len(features)}",
                _outputs_moved(report),
            ]
        )
    headers = ["model", "features tested", "rows in window", "drift_max_values"]
    headers += ["rows counted"]
    headers += ["runs", "p50 ms", "max ms", "every run, ms", "drift_detected"]
    headers += ["features drifted", "outputs drifted"]
    return table(headers, rows)


def _span(counted: list[int], share: list[float]) -> str:
    if min(counted) == max(counted):
        return f"{counted[0]:,} ({100 * share[0]:.1f}%)"
    return f"{min(counted):,}-{max(counted):,} ({100 * min(share):.1f}-{100 * max(share):.1f}%)"


def _tested(runs: Runs) -> list[str]:
    return list(runs.report["features"])


def _drifted(runs: Runs | None) -> list[str]:
    if runs is None:
        return []
    return [name for name, f in runs.report["features"].items() if f.get("drifted")]


def section(args: argparse.Namespace, res: DriftResults, preface: list[str]) -> list[str]:
    ld = res.load
    sampled, exact = res.find(TABULAR), res.find(TABULAR, exact=True)
    defaults = Settings(_env_file=None).monitoring
    fraction = defaults.drift_max_values / (res.rows * res.features[TABULAR])
    text = res.find(TEXT)
    out = [
        f"## E. Drift reports at {res.rows:,} rows per model",
        "",
        *preface,
        f"A fresh database (migrated by `predictd.db.migrate`) with two models registered by "
        "`ModelRegistry` (real artifacts), each with a reference profile built by "
        f"`reference_profile` from {REFERENCE_ROWS:,} validation inputs and the model's own "
        "answers to them: `text`, the demo sentiment model (`train_sentiment`; inputs "
        '`{"text": ...}` drawn from the demo data set\'s sentences; its features are the '
        "text's length and, from the model's own analyzer (`vocabulary()`, as the registry "
        "profiles validation data), token frequencies and the out-of-vocabulary share), "
        "and `tabular`, the demo breast-cancer model (`train_tabular`; "
        f"{res.features[TABULAR]} numeric features drawn from each class's multivariate "
        "normal fitted to the breast-cancer data). "
        f"{res.rows:,} predictions per model in the 24 h before {res.end:%Y-%m-%d %H:%M} UTC "
        f"(the window) and {res.rows:,} more, half each, in the 24 h before that (outside "
        "it), evenly spread over the minutes, every one answered by the real model, "
        f"{100 * ERROR_RATE:g}% errors. In the window's last {SHIFT_SPAN.total_seconds() / 3600:g}"
        f" h the traffic shifts: {100 * TEXT_JOINED:g}% of the texts are two sentences "
        f"joined, and {SHIFTED_FEATURES} of the {res.features[TABULAR]} features "
        f"({', '.join(f'`{n}`' for n in res.shifted_features)}) move by {SHIFT_SD:g} "
        f"standard deviations. Fixed seeds (numpy and `random`, seed {SEED}): the same rows "
        "every run, placed relative to its start.",
        "",
        "Loaded by part D's machinery (`benchmarks.analytics.load_source`): "
        f"{CHUNK_ROWS:,} rows (whole minutes) at a time, encoded by the writer's "
        "`_copy_tuple` and COPY'd into `predictions`, their rollups built by `rollup(records, "
        "into=acc)` and `rows_of` and COPY'd into `prediction_rollups`, the hourly tier "
        "summed from them by the database; then `VACUUM (ANALYZE)` of the three tables and "
        "a CHECKPOINT (the models are registered afterwards, and `model_versions` "
        "vacuumed and analyzed too).",
        "",
        *table(
            [
                *("rows", "chunks", "load s", "rows/s", "rollup rows", "VACUUM ANALYZE s"),
                *("predictions MB", "rollups MB"),
            ],
            [
                [
                    f"{ld.rows:,}",
                    f"{ld.chunks:,}",
                    f"{ld.seconds:.0f}",
                    f"{ld.rate:,.0f}",
                    f"{ld.rollup_rows:,}",
                    f"{ld.analyze_s:.0f}",
                    f"{ld.table_mb:,.0f}",
                    f"{ld.rollups_mb:,.0f}",
                ]
            ],
        ),
        "",
        f"### `DriftService.run`, 24 h window, {res.rows:,} rows per model",
        "",
        "`DriftService(db, settings.monitoring, registry.vocabulary).run(timedelta(hours=24), "
        "model=name, now=end)`, wired as the server and `predictd drift run` wire it, in one "
        "process (asyncpg through SQLAlchemy, a fresh engine per series), timed from the call "
        "until it returns: the version lookup, totals, labels and confidence deciles from the "
        "rollups, the numeric features counted into the reference bins by PostgreSQL, for "
        f"`text` the most recent {defaults.drift_sample:,} texts read and "
        "tokenized by the model's analyzer, the statistics, and the report stored in "
        "`drift_reports`. `now` is the load's end (minute-aligned), so every report covers "
        f"exactly the rows loaded into the window. {RUNS} calls per model, no warm-up (the "
        "first call opens the connection, and for `text` the artifact, verified, for its "
        "vocabulary); then "
        f"{EXACT_RUNS} for `tabular` with `drift_max_values` = {EXACT_MAX_VALUES:,}, which "
        "counts every row: the exact counts the default's sample is compared with. Default "
        f"settings otherwise: `drift_max_values` {defaults.drift_max_values:,}"
        f", so `text` ({res.rows:,} x 1 values) is counted exactly and `tabular` "
        f"({res.rows:,} x {res.features[TABULAR]}) on a random {100 * fraction:.1f}% of "
        "its rows ('rows counted': per call, the sample varies).",
        "",
        *timing_table(res),
        "",
    ]
    if sampled is not None and exact is not None:
        same = _drifted(sampled) == _drifted(exact)
        out += [
            f"`tabular` features drifted: {', '.join(f'`{n}`' for n in _drifted(exact))} "
            f"(exact count); the sampled runs' last report "
            + ("names the same." if same else f"names {_drifted(sampled)}."),
            "",
        ]
    if text is not None:
        features = text.report["features"]
        feature = features["text_length"]
        out += [
            f"`text`: text_length normalised Wasserstein distance {feature['statistic']:.3f} "
            f"(PSI {feature['psi']:.3f}), drifted {feature['drifted']}; counts per reference "
            f"bin {feature['counts']}."
            + "".join(
                f" {name}: {f.get('method')} {f.get('statistic', float('nan')):.3f} over "
                f"{f.get('rows', 0):,} texts, drifted {f.get('drifted')}"
                + (
                    f" (rate {f['rate']:.4f}, reference {f['reference_rate']:.4f})"
                    if f.get("rate") is not None and f.get("reference_rate") is not None
                    else ""
                )
                + "."
                for name, f in features.items()
                if name != "text_length"
            ),
            "",
        ]
    out += [
        "### Correctness",
        "",
        *[f"- **{c.name}**: {'ok' if c.ok else 'FAILED'}; {c.detail}" for c in res.checks],
        "",
        "'sampled = exact': every sampled run against the exact run: the same "
        "`drift_detected`, and each feature's share of rows in each reference bin within "
        f"{100 * MAX_SHARE_GAP:g} percentage point. 'text_length counts = raw rows': the "
        "report's counts per bin against a GROUP BY over `predictions` (`width_bucket` of "
        "`length(input->>'text')` over the reference's edges, status 'ok', the window) and "
        "against the generator's own tally (numpy `searchsorted(edges, len(text), "
        "side='right')` of the rows it made), and its row count against the answered rows "
        "generated in the window.",
        "",
    ]
    return out


def verdicts(res: DriftResults) -> list[Verdict]:
    out = []
    exact = res.find(TABULAR, exact=True)
    for name in (TEXT, TABULAR):
        runs = res.find(name)
        if runs is None:
            continue
        counted = runs.counted()
        share = statistics.median(counted) / runs.report["rows"] if runs.report["rows"] else 0
        note = f"max {runs.max:,.0f} ms"
        if name == TABULAR:
            note += f"; {100 * share:.1f}% of rows counted"
            if exact is not None:
                note += f", exact count p50 {exact.p50:,.0f} ms"
        out.append(
            Verdict(
                f"drift, {name} report p50, {res.rows:,} rows"
                + (" (length, tokens)" if name == TEXT else f" x {res.features[name]} features"),
                f"< {TARGET_P50_MS:,.0f} ms",
                f"{runs.p50:,.0f} ms ({note})",
                runs.p50 < TARGET_P50_MS,
            )
        )
    for check in res.checks:
        target = (
            "same verdict; bin shares within 1 pp"
            if check.name.startswith("sampled")
            else "report = GROUP BY = generated"
        )
        out.append(Verdict(f"drift, {check.name}", target, check.detail, check.ok))
    return out


def raw(res: DriftResults) -> dict[str, Any]:
    return {
        "load": asdict(res.load) | {"rate": res.load.rate},
        "rows": res.rows,
        "end": res.end.isoformat(),
        "features": res.features,
        "answered": res.answered,
        "shifted_features": res.shifted_features,
        "runs": [
            {
                "model": r.model,
                "max_values": r.max_values,
                "samples_ms": r.samples_ms,
                "p50": r.p50,
                "max": r.max,
                "counted": r.counted(),
                "reports": r.reports,
            }
            for r in res.runs
        ],
        "checks": [asdict(c) for c in res.checks],
        "max_share_gap": res.max_share_gap,
        "text_bins": res.text_bins,
    }
