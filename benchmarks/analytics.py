"""Part D: analytics at 10 million rows.

A fresh database (migrated by ``predictd.db.migrate``) is filled with ``--analytics-rows``
synthetic predictions spread over the last 30 days: three models, version changes, a canary
and a shadow candidate, 2-3 labels, skewed latencies, some errors and cache hits. Rows are
generated a chunk of whole minutes at a time (never all in memory), encoded by the writer's
own ``_copy_tuple`` and COPY'd into ``predictions``; their rollups come from the writer's own
``rollup(..., into=acc)`` and ``rows_of``, COPY'd into ``prediction_rollups``. Then:

* a real ``predictd serve`` answers ``GET /analytics/summary`` and ``/analytics/distribution``
  for the last 24 h and the 30 days, timed over HTTP;
* the same figures computed the naive way, aggregates over ``predictions`` (what analytics
  did before the rollups), timed over a few repetitions;
* correctness: what the API answers equals those raw aggregates, and every rollup row equals
  a GROUP BY over the raw rows;
* a spool replay (the real ``PredictionRecorder``, ``process`` durability): records spooled
  during an outage are shipped, then replayed again from a restored spool copy (as after a
  crash that lost the watermark), plus batches mixing shipped and new records; the rollups
  must still equal the raw rows.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import logging
import math
import random
import shutil
import signal
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import numpy as np
import orjson
import psycopg2

from benchmarks.environment import Postgres, wait_until_quiet
from benchmarks.report import Verdict, table
from benchmarks.targets import Server, predictd_server
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import (
    CONFIDENCE_COLUMNS,
    HISTOGRAM_COLUMNS,
    LATENCY_BOUNDS_MS,
    prediction_rollups,
)
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter, _copy_tuple
from predictd.recording.rollups import Rollup, RollupKey, rollup, rows_of
from predictd.settings import Settings
from predictd.vocabulary import CONFIDENCE_BINS, PREDICTION_COLUMNS

TARGET_P50_MS = 50.0
DAYS = 30
CHUNK_ROWS = 50_000  # rows generated and COPY'd at a time (whole minutes, about this many)
API_CALLS = 30  # timed calls per endpoint and window, after API_WARMUP unmeasured ones
API_WARMUP = 3
NAIVE_RUNS = 3  # the naive aggregates scan every row of the window: a few runs only
REPLAY_RECORDS = 20_000
REPLAY_SPAN = timedelta(hours=2)
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # discard port: refused at once
ROLLUP_COLUMNS: tuple[str, ...] = tuple(c.name for c in prediction_rollups.c)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENDPOINTS = ("summary", "distribution")

# -- the synthetic traffic ----------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One model version in one variant: its labels, and its latency's lognormal shape."""

    model: str
    version: int
    variant: str
    labels: tuple[str | int, ...]
    label_weights: tuple[float, ...]
    latency_ms: float  # median
    sigma: float
    cache_rate: float = 0.0


SENTIMENT = ("negative", "neutral", "positive")
S_V2 = Stream("sentiment", 2, "production", SENTIMENT, (0.3, 0.2, 0.5), 3.5, 0.45, 0.08)
S_V3_CANARY = Stream("sentiment", 3, "canary", SENTIMENT, (0.3, 0.2, 0.5), 3.0, 0.45, 0.08)
S_V3 = Stream("sentiment", 3, "production", SENTIMENT, (0.3, 0.2, 0.5), 3.0, 0.45, 0.08)
S_V4_SHADOW = Stream("sentiment", 4, "shadow", SENTIMENT, (0.32, 0.18, 0.5), 6.0, 0.5)
FRAUD = Stream("fraud", 7, "production", ("legit", "fraud"), (0.97, 0.03), 1.2, 0.35, 0.02)
CHURN = Stream("churn", 1, "production", (0, 1), (0.8, 0.2), 8.0, 0.6)
STREAMS = (S_V2, S_V3_CANARY, S_V3, S_V4_SHADOW, FRAUD, CHURN)
# (from which day of 30, streams and their share of the rows): sentiment v2 in production,
# a v3 canary on days 14-16, v3 promoted, then v4 shadowing it for the last week. A shorter
# span keeps the same phases in proportion.
PHASES: tuple[tuple[float, tuple[tuple[Stream, float], ...]], ...] = (
    (0.0, ((S_V2, 0.50), (FRAUD, 0.35), (CHURN, 0.15))),
    (14.0, ((S_V2, 0.45), (S_V3_CANARY, 0.05), (FRAUD, 0.35), (CHURN, 0.15))),
    (16.0, ((S_V3, 0.50), (FRAUD, 0.35), (CHURN, 0.15))),
    (23.0, ((S_V3, 0.40), (S_V4_SHADOW, 0.20), (FRAUD, 0.28), (CHURN, 0.12))),
)
ERROR_RATE = 0.004
TAIL_RATE = 0.002  # a latency spike (GC pause, cold cache) 20-300x the usual
ERRORS = ("ValueError: input has 0 features", "TimeoutError: model took too long")
AGENTS = ("python-httpx/0.28.1", "Go-http-client/1.1", "okhttp/4.12.0", "curl/8.5.0")
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL")
PLANS = ("free", "pro", "team")


def uuid7(ms: int, seq: int) -> uuid.UUID:
    """Time-ordered like the server's uuid7 ids, ``seq`` (a counter) for the random bits, so
    every id is unique."""
    rand = seq & ((1 << 74) - 1)
    return uuid.UUID(
        int=(ms << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )


class ChunkSource(Protocol):
    """Synthetic predictions over ``start``..``end``, ``chunks`` of whole minutes; ``chunk(i)``
    gives chunk ``i``'s records in time order (what ``load_source`` COPYs)."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def chunks(self) -> Sequence[tuple[int, int]]: ...

    def chunk(self, index: int) -> list[PredictionRecord]: ...


class Traffic:
    """``rows`` predictions over the ``span`` before ``end``, in time order, a chunk of whole
    minutes at a time, seeded: the same rows every run. Request volume follows the time of
    day (busiest mid-afternoon UTC, a third of that at night)."""

    def __init__(
        self, rows: int, end: datetime, span: timedelta = timedelta(days=DAYS), seed: int = 0
    ) -> None:
        from predictd.demo.train import load_sentiment_data

        self.rows, self.end = rows, end
        self.start = end - span
        self.rng = np.random.default_rng(seed)
        self.py = random.Random(seed)
        self.texts = load_sentiment_data()[0]
        minutes = int(span.total_seconds()) // 60
        self.span_us = minutes * 60_000_000
        hour = (np.arange(minutes) / 60.0 + self.start.hour + self.start.minute / 60) % 24
        weight = 1.0 + 0.5 * np.sin(2 * np.pi * (hour - 9.0) / 24) * self.rng.uniform(0.9, 1.1)
        self.per_minute = self.rng.multinomial(rows, weight / weight.sum())
        ends = np.searchsorted(np.cumsum(self.per_minute), np.arange(CHUNK_ROWS, rows, CHUNK_ROWS))
        bounds = [0, *sorted({int(e) + 1 for e in ends if int(e) + 1 < minutes}), minutes]
        self.chunks = list(itertools.pairwise(bounds))
        self.start_us = int((self.start - EPOCH).total_seconds()) * 1_000_000
        self.ips = [f"10.{self.py.randrange(256)}.{self.py.randrange(256)}.7" for _ in range(300)]
        self._seq = self.py.getrandbits(40)
        self._phase_starts = [p[0] / DAYS for p in PHASES]  # fractions of the span
        self._index = {s: i for i, s in enumerate(STREAMS)}
        self._cum_labels = [np.cumsum(s.label_weights) / sum(s.label_weights) for s in STREAMS]

    def _uuid7(self, ms: int) -> uuid.UUID:
        self._seq += 1
        return uuid7(ms, self._seq)

    def chunk(self, index: int) -> list[PredictionRecord]:
        m0, m1 = self.chunks[index]
        counts = self.per_minute[m0:m1]
        n = int(counts.sum())
        rng = self.rng
        minute_us = self.start_us + np.arange(m0, m1, dtype=np.int64) * 60_000_000
        ts_us = np.sort(np.repeat(minute_us, counts) + rng.integers(0, 60_000_000, n))
        elapsed = (ts_us - self.start_us) / self.span_us
        phase = np.searchsorted(self._phase_starts, elapsed, side="right") - 1
        stream = np.empty(n, dtype=np.int64)
        for p, (_, shares) in enumerate(PHASES):
            rows = np.flatnonzero(phase == p)
            weights = np.array([w for _, w in shares])
            picked = rng.choice(len(shares), size=len(rows), p=weights / weights.sum())
            stream[rows] = np.array([self._index[s] for s, _ in shares])[picked]
        u_label, u_cache, u_error, u_tail = (rng.random(n) for _ in range(4))
        label = np.zeros(n, dtype=np.int64)
        median = np.empty(n)
        sigma = np.empty(n)
        cache_rate = np.empty(n)
        for i, s in enumerate(STREAMS):
            rows = stream == i
            label[rows] = np.searchsorted(self._cum_labels[i], u_label[rows], side="right")
            median[rows], sigma[rows], cache_rate[rows] = s.latency_ms, s.sigma, s.cache_rate
        error = u_error < ERROR_RATE
        cache = (u_cache < cache_rate) & ~error
        latency = median * np.exp(sigma * rng.standard_normal(n))
        latency = np.where(u_tail < TAIL_RATE, latency * rng.uniform(20, 300, n), latency)
        latency = np.where(cache, rng.uniform(0.05, 0.4, n), latency)
        latency = np.where(error, rng.uniform(0.2, 3.0, n), latency)
        confidence = rng.beta(5.0, 1.6, n)  # skewed towards confident answers
        split = rng.random(n)
        return self._records(
            ts_us.tolist(),
            stream.tolist(),
            np.minimum(label, 2).tolist(),
            latency.round(4).tolist(),
            confidence.tolist(),
            split.tolist(),
            error.tolist(),
            cache.tolist(),
        )

    def _records(
        self,
        ts_us: list[int],
        stream: list[int],
        label: list[int],
        latency: list[float],
        confidence: list[float],
        split: list[float],
        error: list[bool],
        cache: list[bool],
    ) -> list[PredictionRecord]:
        py, texts, ips = self.py, self.texts, self.ips
        out: list[PredictionRecord] = []
        last_sentiment: PredictionRecord | None = None  # the answer a shadow row mirrors
        batch_id, batch_left = None, 0
        for i, us in enumerate(ts_us):
            s = STREAMS[stream[i]]
            ts = EPOCH + timedelta(microseconds=us)
            shadow_of = None
            if s.model == "sentiment":
                if s.variant == "shadow" and last_sentiment is not None:
                    shadow_of, payload = last_sentiment.id, last_sentiment.input
                else:
                    payload = {"text": texts[py.randrange(len(texts))]}
            elif s.model == "fraud":
                payload = {
                    "features": {
                        "amount": round(py.lognormvariate(3.5, 1.2), 2),
                        "country": COUNTRIES[py.randrange(len(COUNTRIES))],
                        "hour": ts.hour,
                    }
                }
            else:
                payload = {
                    "features": {
                        "tenure_months": py.randrange(1, 72),
                        "plan": PLANS[py.randrange(len(PLANS))],
                        "tickets": py.randrange(6),
                    }
                }
            ok = not error[i]
            output: str | int | None = None
            conf: float | None = None
            probabilities: dict[str, float] | None = None
            if ok:
                output = s.labels[min(label[i], len(s.labels) - 1)]
                k = len(s.labels)
                conf = 1 / k + (1 - 1 / k) * confidence[i]
                rest = 1 - conf
                others = [str(c) for c in s.labels if c != output]
                shares = [split[i], 1 - split[i]] if len(others) == 2 else [1.0]
                probabilities = {str(output): conf}
                probabilities.update({c: rest * w for c, w in zip(others, shares, strict=True)})
            if s.model == "fraud" and (batch_left or py.random() < 0.02):
                if not batch_left:  # a /batch call of 16 transactions
                    batch_id, batch_left = uuid.UUID(int=py.getrandbits(128), version=4), 16
                batch_left -= 1
            else:
                batch_id = None
            record = PredictionRecord(
                id=self._uuid7(us // 1000),
                ts=ts,
                model_name=s.model,
                model_version=s.version,
                variant=s.variant,
                request_id=f"{py.getrandbits(128):032x}",
                batch_id=batch_id,
                input=payload,
                output=output,
                confidence=conf,
                probabilities=probabilities,
                latency_ms=latency[i],
                cache_hit=cache[i],
                status="ok" if ok else "error",
                error=None if ok else ERRORS[py.randrange(len(ERRORS))],
                client_ip=ips[py.randrange(len(ips))],
                user_agent=AGENTS[py.randrange(len(AGENTS))],
                shadow_of=shadow_of,
            )
            if s.model == "sentiment" and s.variant != "shadow":
                last_sentiment = record
            out.append(record)
        return out


# -- results ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    rows: int
    rollup_rows: int
    chunks: int
    seconds: float  # generate + COPY, predictions and rollups, until the last commit
    generate_s: float  # of which in generation, rollups and encoding (overlaps the COPY)
    analyze_s: float  # VACUUM ANALYZE of both tables afterwards
    table_mb: float
    rollups_mb: float
    start: datetime
    end: datetime

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Timing:
    endpoint: str
    window: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    @property
    def max(self) -> float:
        return max(self.samples_ms)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class AnalyticsResults:
    load: LoadResult
    api: list[Timing] = field(default_factory=list)
    naive: list[Timing] = field(default_factory=list)
    direct: list[Timing] = field(default_factory=list)  # the rollup queries alone, no HTTP
    generic: list[Timing] = field(default_factory=list)  # the same on the generic plan
    window_rows: dict[str, dict[str, int]] = field(default_factory=dict)  # rows each reads
    answers: dict[str, Any] = field(default_factory=dict)  # API and raw figures, per window
    checks: list[Check] = field(default_factory=list)
    keys_check: Check | None = None
    replay: Check | None = None
    replay_detail: list[str] = field(default_factory=list)
    server_notes: list[str] = field(default_factory=list)

    def timing(self, kind: str, endpoint: str, window: str) -> Timing | None:
        found = {
            "api": self.api,
            "naive": self.naive,
            "direct": self.direct,
            "generic": self.generic,
        }[kind]
        return next((t for t in found if t.endpoint == endpoint and t.window == window), None)


# -- loading ------------------------------------------------------------------------------


async def _migrate(url: str) -> None:
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


def _encode(
    traffic: ChunkSource, index: int, acc: dict[RollupKey, Rollup]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """One chunk as the writer would write it: its COPY tuples (``_copy_tuple``) and the
    rollup rows now final (``rollup(..., into=acc)``, ``rows_of``), in a worker thread."""
    records = traffic.chunk(index)
    rollup(records, into=acc)
    tuples = [_copy_tuple(r) for r in records]
    # Rows are in time order: every minute before this chunk's last one is complete.
    last = records[-1].ts.replace(second=0, microsecond=0) if records else None
    final = len(traffic.chunks) - 1 == index
    done = {k: v for k, v in acc.items() if final or (last is not None and k[0] < last)}
    for key in done:
        del acc[key]
    rollup_rows = [tuple(row[c] for c in ROLLUP_COLUMNS) for row in rows_of(done)]
    return tuples, rollup_rows


async def _copy_chunk(
    conn: Any, tuples: list[tuple[Any, ...]], rollup_rows: list[tuple[Any, ...]]
) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table("predictions", records=tuples, columns=PREDICTION_COLUMNS)
        if rollup_rows:
            await conn.copy_records_to_table(
                "prediction_rollups", records=rollup_rows, columns=ROLLUP_COLUMNS
            )


async def _load(url: str, traffic: ChunkSource, progress: bool) -> tuple[int, float, float]:
    """Generate and COPY every chunk; the next chunk is generated (in a thread) while the
    previous one is being copied. Returns (rollup rows, seconds, seconds generating)."""
    conn = await asyncpg.connect(url)
    acc: dict[RollupKey, Rollup] = {}
    rollup_rows = 0
    generating = 0.0
    copying: asyncio.Task[None] | None = None
    try:
        started = time.perf_counter()
        for index in range(len(traffic.chunks)):
            t0 = time.perf_counter()
            tuples, rollups = await asyncio.to_thread(_encode, traffic, index, acc)
            generating += time.perf_counter() - t0
            rollup_rows += len(rollups)
            if copying is not None:
                await copying
            copying = asyncio.create_task(_copy_chunk(conn, tuples, rollups))
            if progress and index % 20 == 19:
                done = (index + 1) / len(traffic.chunks)
                spent = time.perf_counter() - started
                print(f"    {100 * done:.0f}% after {spent:.0f} s")
        if copying is not None:
            await copying
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return rollup_rows, seconds, generating


def load(pg: Postgres, url: str, rows: int) -> LoadResult:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    return load_source(pg, url, Traffic(rows, end), rows)


def load_source(pg: Postgres, url: str, traffic: ChunkSource, rows: int) -> LoadResult:
    """Migrate the database at ``url`` and fill it with ``traffic``'s ``rows`` predictions
    and their rollups (minute and hourly), then VACUUM (ANALYZE) and CHECKPOINT."""
    end = traffic.end
    asyncio.run(_migrate(url))
    rollup_rows, seconds, generating = asyncio.run(_load(url, traffic, rows >= 1_000_000))
    # The hourly tier, summed from the minute rollups by the database (as migration 0009
    # does for existing rows; the live writer derives it in the same transaction instead).
    pg.execute(HOURLY_FROM_MINUTES, url)
    t0 = time.perf_counter()
    # What autovacuum would have done by the time anyone asks: statistics for the planner,
    # hint bits and the visibility map (so neither side's first query pays for them).
    pg.execute("VACUUM (ANALYZE) predictions", url)
    pg.execute("VACUUM (ANALYZE) prediction_rollups", url)
    pg.execute("VACUUM (ANALYZE) prediction_rollups_hourly", url)
    analyze_s = time.perf_counter() - t0
    pg.checkpoint()
    size = "SELECT pg_total_relation_size('{}') / 1048576.0"
    return LoadResult(
        rows=rows,
        rollup_rows=rollup_rows,
        chunks=len(traffic.chunks),
        seconds=seconds,
        generate_s=generating,
        analyze_s=analyze_s,
        table_mb=float(pg.scalar(size.format("predictions"), url)),
        rollups_mb=float(pg.scalar(size.format("prediction_rollups"), url)),
        start=traffic.start,
        end=end,
    )


# -- timing -------------------------------------------------------------------------------


def windows(res: LoadResult) -> dict[str, tuple[datetime, datetime]]:
    """Minute-aligned, so the rollups' one-minute resolution covers exactly the raw rows."""
    return {"24 h": (res.end - timedelta(hours=24), res.end), "30 days": (res.start, res.end)}


def _params(window: tuple[datetime, datetime]) -> dict[str, str]:
    return {"from": window[0].isoformat(), "to": window[1].isoformat()}


def time_api(server: Server, res: AnalyticsResults) -> None:
    with httpx.Client(base_url=server.base, timeout=120) as client:
        for name, window in windows(res.load).items():
            for endpoint in ENDPOINTS:
                path = f"/analytics/{endpoint}"
                samples = []
                for i in range(API_WARMUP + API_CALLS):
                    t0 = time.perf_counter()
                    reply = client.get(path, params=_params(window))
                    elapsed = 1000 * (time.perf_counter() - t0)
                    reply.raise_for_status()
                    if i >= API_WARMUP:
                        samples.append(elapsed)
                res.api.append(Timing(endpoint, name, samples))
                res.answers.setdefault(name, {})[f"api {endpoint}"] = reply.json()


NOT_SHADOW = "ts >= %(start)s AND ts < %(end)s AND variant <> 'shadow'"
NAIVE_SUMMARY = f"""
SELECT count(*) FILTER (WHERE status = 'ok'),
       count(*) FILTER (WHERE status <> 'ok'),
       count(*) FILTER (WHERE status = 'ok' AND cache_hit),
       avg(confidence) FILTER (WHERE status = 'ok'),
       avg(latency_ms) FILTER (WHERE status = 'ok'),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'ok'),
       min(ts), max(ts)
FROM predictions WHERE {NOT_SHADOW}
"""
NAIVE_DISTRIBUTION = f"""
SELECT output, count(*) FROM predictions WHERE {NOT_SHADOW} AND status = 'ok'
GROUP BY output ORDER BY count(*) DESC
"""


_HOURLY_SUMS = ("count", "errors", "cache_hits", "confidence_count", "confidence_sum",
                "latency_sum", *HISTOGRAM_COLUMNS, *CONFIDENCE_COLUMNS)  # fmt: skip
_HOURLY_KEYS = "model_name, model_version, variant, label"
HOURLY_FROM_MINUTES = (
    f"INSERT INTO prediction_rollups_hourly (bucket, {_HOURLY_KEYS}, "
    f"{', '.join(f'{chr(34)}{c}{chr(34)}' for c in _HOURLY_SUMS)}, first_ts, last_ts) "
    f"SELECT date_trunc('hour', bucket, 'UTC'), {_HOURLY_KEYS}, "
    f"{', '.join(f'sum({chr(34)}{c}{chr(34)})' for c in _HOURLY_SUMS)}, min(first_ts), "
    f"max(last_ts) FROM prediction_rollups GROUP BY 1, {_HOURLY_KEYS}"
)
_IN_ROLLUPS = "bucket >= %(start)s AND bucket < %(end)s AND variant <> 'shadow'"
_SUMMED = ("count", "errors", "cache_hits", "confidence_sum", "confidence_count", "latency_sum")
DIRECT_SUMMARY = f"""
SELECT {", ".join(f"coalesce(sum({c}), 0)" for c in (*_SUMMED, *HISTOGRAM_COLUMNS))},
       min(first_ts), max(last_ts)
FROM prediction_rollups WHERE {_IN_ROLLUPS}
"""
DIRECT_DISTRIBUTION = f"""
SELECT label, sum(count) FROM prediction_rollups WHERE {_IN_ROLLUPS} AND label <> ''
GROUP BY label ORDER BY sum(count) DESC, label
"""
WINDOW_ROWS = f"""
SELECT (SELECT count(*) FROM predictions WHERE {NOT_SHADOW}),
       (SELECT count(*) FROM prediction_rollups WHERE {_IN_ROLLUPS})
"""


def _timed(cur: Any, sql: str, params: dict[str, Any], runs: int) -> tuple[list[float], Any]:
    samples, rows = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        samples.append(1000 * (time.perf_counter() - t0))
    return samples, rows


def _generic(cur: Any, sql: str, params: dict[str, Any]) -> list[float]:
    """``sql`` as a prepared statement on PostgreSQL's generic plan (planned without the
    window's bounds), which is what the server's cached statements (asyncpg, through
    SQLAlchemy) may settle on from their sixth execution."""
    cur.execute(
        "PREPARE rollup_query (timestamptz, timestamptz) AS "
        + sql.replace("%(start)s", "$1").replace("%(end)s", "$2")
    )
    cur.execute("SET plan_cache_mode = force_generic_plan")
    try:
        execute = "EXECUTE rollup_query (%(start)s, %(end)s)"
        return _timed(cur, execute, params, API_CALLS)[0]
    finally:
        cur.execute("RESET plan_cache_mode")
        cur.execute("DEALLOCATE rollup_query")


def time_sql(url: str, res: AnalyticsResults) -> None:
    """Straight from PostgreSQL (psycopg2, no HTTP): the naive aggregates over
    ``predictions``, as analytics computed them before the rollups (the old code's COUNT/AVG
    and GROUP BY output, the p95 by percentile_cont), and for reference the rollup queries
    the API runs, written out by hand."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            for name, (start, end) in windows(res.load).items():
                params = {"start": start, "end": end}
                cur.execute(WINDOW_ROWS, params)
                raw_rows, rollup_rows = cur.fetchone()
                res.window_rows[name] = {"raw": raw_rows, "rollups": rollup_rows}
                for endpoint, naive, direct in (
                    ("summary", NAIVE_SUMMARY, DIRECT_SUMMARY),
                    ("distribution", NAIVE_DISTRIBUTION, DIRECT_DISTRIBUTION),
                ):
                    samples, _ = _timed(cur, direct, params, API_CALLS)
                    res.direct.append(Timing(endpoint, name, samples))
                    res.generic.append(Timing(endpoint, name, _generic(cur, direct, params)))
                    samples, rows = _timed(cur, naive, params, NAIVE_RUNS)
                    res.naive.append(Timing(endpoint, name, samples))
                    res.answers.setdefault(name, {})[f"raw {endpoint}"] = rows
    finally:
        conn.close()


# -- correctness --------------------------------------------------------------------------


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def compare_answers(res: AnalyticsResults) -> None:
    """What the API answered (rollups) against the raw aggregates of the naive queries."""
    for name, got in res.answers.items():
        api, raw = got["api summary"], got["raw summary"][0]
        total, errors, cache_hits, avg_conf, avg_latency, p95, first, last = raw
        wrong = [
            what
            for what, ok in (
                ("total", api["total"] == total),
                ("errors", api["errors"] == errors),
                ("cache_hits", api["cache_hits"] == cache_hits),
                ("avg_confidence", _close(api["avg_confidence"], avg_conf)),
                ("avg_latency_ms", _close(api["avg_latency_ms"], avg_latency)),
                ("earliest", _when(api["earliest"]) == _when(first)),
                ("latest", _when(api["latest"]) == _when(last)),
            )
            if not ok
        ]
        labels = {orjson_text(c["label"]): c["count"] for c in got["api distribution"]["labels"]}
        raw_labels = {orjson_text(label): int(n) for label, n in got["raw distribution"]}
        if labels != raw_labels:
            wrong.append(f"labels {labels} != {raw_labels}")
        low, high = _bucket_bounds(p95)
        got["p95"] = {"api": api["p95_latency_ms"], "exact": p95, "bucket": [low, high]}
        res.checks.append(
            Check(
                f"API = raw, {name}",
                not wrong,
                f"{total:,} answered, {errors:,} errors, {cache_hits:,} cache hits, "
                f"{len(labels)} labels" + (f"; differ: {', '.join(wrong)}" if wrong else ""),
            )
        )


def orjson_text(label: Any) -> str:
    """A label as the rollups key it (JSON text), so 1, True and "1" stay apart."""
    return orjson.dumps(label).decode()


def _bucket_bounds(latency: float | None) -> tuple[float, float | None]:
    if latency is None:
        return 0.0, None
    i = bisect.bisect_left(LATENCY_BOUNDS_MS, latency)
    low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
    return low, LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else None


OK = "status = 'ok'"
KEYS = ("bucket", "model_name", "model_version", "variant", "label")
FLOAT_SUMS = ("confidence_sum", "latency_sum")  # compared to 1e-9, relative


def raw_formulas() -> dict[str, str]:
    """Each rollup column as an aggregate over the raw rows of its key, written from the
    rollups' documented meaning, not from their code."""
    out = {
        "count": f"count(*) FILTER (WHERE {OK})",
        "errors": f"count(*) FILTER (WHERE NOT {OK})",
        "cache_hits": f"count(*) FILTER (WHERE {OK} AND cache_hit)",
        "confidence_count": f"count(confidence) FILTER (WHERE {OK})",
        "confidence_sum": f"coalesce(sum(confidence) FILTER (WHERE {OK}), 0)",
        "latency_sum": f"coalesce(sum(latency_ms) FILTER (WHERE {OK}), 0)",
        "first_ts": "min(ts)",
        "last_ts": "max(ts)",
    }
    # Latency bucket i holds bounds[i-1] < latency <= bounds[i]; the last, the rest.
    for i, name in enumerate(HISTOGRAM_COLUMNS):
        cond = [OK]
        if i:
            cond.append(f"latency_ms > {LATENCY_BOUNDS_MS[i - 1]}")
        if i < len(LATENCY_BOUNDS_MS):
            cond.append(f"latency_ms <= {LATENCY_BOUNDS_MS[i]}")
        out[name] = f"count(*) FILTER (WHERE {' AND '.join(cond)})"
    # Confidence bin i holds [i/10, (i+1)/10), the last one 1.0 too.
    top = CONFIDENCE_BINS - 1
    for i, name in enumerate(CONFIDENCE_COLUMNS):
        binned = f"least({top}, greatest(0, trunc(confidence * {CONFIDENCE_BINS})))"
        out[name] = f"count(*) FILTER (WHERE {OK} AND confidence IS NOT NULL AND {binned} = {i})"
    return out


def keys_check_sql() -> str:
    """A FULL JOIN of ``prediction_rollups`` with the raw rows grouped on its key: (keys,
    keys without a rollup row, rollup rows without raw rows, keys that differ, raw rows).
    A rollup column this check cannot compute fails it loudly rather than going unchecked."""
    formulas = raw_formulas()
    columns = [c for c in ROLLUP_COLUMNS if c not in KEYS]
    unknown = sorted(set(columns) - set(formulas))
    if unknown:
        raise RuntimeError(f"no raw-row formula for rollup columns {unknown}: update {__name__}")
    exact = [c for c in columns if c not in FLOAT_SUMS]
    floats = [
        f"abs(r.{c} - raw.{c}) > 1e-9 * greatest(1, abs(raw.{c}))"
        for c in columns
        if c in FLOAT_SUMS
    ]
    return f"""
WITH raw AS (
  SELECT date_trunc('minute', ts) AS bucket, model_name, model_version, variant,
         CASE WHEN {OK} THEN output::text ELSE '' END AS label,
         {", ".join(f"{formulas[c]} AS {c}" for c in columns)}
  FROM predictions GROUP BY 1, 2, 3, 4, 5
)
SELECT count(*),
       count(*) FILTER (WHERE r.count IS NULL),
       count(*) FILTER (WHERE raw.count IS NULL),
       count(*) FILTER (WHERE r.count IS NOT NULL AND raw.count IS NOT NULL AND (
         ({", ".join(f"r.{c}" for c in exact)})
           IS DISTINCT FROM ({", ".join(f"raw.{c}" for c in exact)})
         OR {" OR ".join(floats)})),
       coalesce(sum(raw.count + raw.errors), 0)
FROM raw FULL JOIN prediction_rollups r USING ({", ".join(KEYS)})
"""


def check_keys(url: str, what: str) -> Check:
    """Every rollup row against a GROUP BY of the raw rows on the rollup key (minute, model,
    version, variant, label): counts, sums, first/last ts and every histogram bucket."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET work_mem = '256MB'")
            t0 = time.perf_counter()
            cur.execute(keys_check_sql())
            keys, no_rollup, no_raw, differ, rows = cur.fetchone()
            seconds = time.perf_counter() - t0
    finally:
        conn.close()
    ok = keys > 0 and no_rollup == 0 and no_raw == 0 and differ == 0
    return Check(
        what,
        ok,
        f"{keys:,} rollup keys over {rows:,} rows: {differ} differ, {no_rollup} missing, "
        f"{no_raw} without rows (checked in {seconds:.1f} s)",
    )


# -- the spool replay ---------------------------------------------------------------------


def _replay_settings(url: str, spool: Path, **overrides: Any) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        durability="process",
        spool_dir=spool,
        record_flush_ms=5,
        log_level="WARNING",
        **overrides,
    )


async def _recorder_run(settings: Settings, records: list[PredictionRecord]) -> int:
    """Records through ``PredictionRecorder.record()`` in calls of 1-32; waits until they
    (and whatever its spool held) are committed, unless the database is down (then the spool
    keeps them). Returns how many records it shipped, duplicates included."""
    db = Database(settings.database, writer_connections=settings.recording.concurrency)
    metrics = Metrics.create()
    recorder = PredictionRecorder(settings.recording, PredictionWriter(db), metrics)
    recorder.start()
    try:
        rng = random.Random(len(records))
        i = 0
        while i < len(records):
            step = rng.randint(1, 32)
            await recorder.record(records[i : i + step])
            i += step
            await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        while settings.database.url != UNREACHABLE:
            state = recorder.state()
            if state.committed_lsn >= state.last_lsn:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"recorder did not drain: {state}")
            await asyncio.sleep(0.02)
    finally:
        await recorder.close()
        await db.dispose()
    return int(metrics.registry.get_sample_value("predictd_records_shipped_total") or 0)


async def _replay(
    url: str, spool: Path, records: list[PredictionRecord], end: datetime
) -> tuple[int, int, list[int]]:
    """Returns (rows expected, rows new in the mixed batches as the writer counted them,
    records each recorder shipped)."""
    half = len(records) // 2
    live, spooled = records[:half], records[half:]
    # 1. normal service: shipped from the recorder's queue.
    shipped = [await _recorder_run(_replay_settings(url, spool / "live"), live)]
    # 2. an outage: everything goes to the spool only.
    outage = spool / "outage"
    down = _replay_settings(UNREACHABLE, outage, db_connect_timeout_s=0.5)
    quiet = logging.getLogger("predictd")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the recorder's expected warnings about the outage
    try:
        shipped.append(await _recorder_run(down, spooled))
    finally:
        quiet.setLevel(level)
    snapshot = spool / "snapshot"
    shutil.copytree(outage, snapshot)
    # 3. the database is back: a new recorder ships the spooled records (read back from disk).
    shipped.append(await _recorder_run(_replay_settings(url, outage), []))
    # 4. the spool as it was before 3 (a crash that lost the watermark): everything again.
    shutil.rmtree(outage)
    shutil.copytree(snapshot, outage)
    shipped.append(await _recorder_run(_replay_settings(url, outage), []))
    # 5. batches holding both shipped and new records (a replay racing fresh traffic).
    rng = random.Random(5)
    fresh = Traffic(2_000, end, REPLAY_SPAN, seed=11)
    new = [r for i in range(len(fresh.chunks)) for r in fresh.chunk(i)]
    db = Database(_replay_settings(url, spool / "unused").database)
    writer = PredictionWriter(db)
    added = 0
    try:
        for i in range(0, len(new), 500):
            batch = rng.sample(records, 500) + new[i : i + 500]
            rng.shuffle(batch)
            added += await writer.write(batch)
    finally:
        await db.dispose()
    return len(records) + len(new), added, shipped


def replay_check(pg: Postgres, spool: Path, count: int, res: AnalyticsResults) -> None:
    url = pg.create_database("analytics_replay")
    asyncio.run(_migrate(url))
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    # The same traffic over a short span, so many records share each rollup key.
    traffic = Traffic(count, end, REPLAY_SPAN, seed=7)
    records = [r for i in range(len(traffic.chunks)) for r in traffic.chunk(i)]
    expected, added, shipped = asyncio.run(_replay(url, spool, records, end))
    rows = int(pg.scalar("SELECT count(*) FROM predictions", url))
    keys = check_keys(url, "rollups = raw after replay")
    new = expected - len(records)
    half = len(records) // 2
    ok = keys.ok and rows == expected and added == new
    ok = ok and shipped == [half, 0, len(records) - half, len(records) - half]
    res.replay_detail = [
        f"{len(records):,} records over {REPLAY_SPAN.total_seconds() / 3600:g} h through "
        "`PredictionRecorder` (`process` durability, in calls of 1-32 records): "
        f"{half:,} shipped live ({shipped[0]:,} shipped), {len(records) - half:,} spooled "
        f"during an outage (database unreachable; {shipped[1]:,} shipped) and shipped by a new "
        f"recorder from the spool ({shipped[2]:,}), then replayed once more by another from "
        f"a copy of that spool taken before it shipped, as after a crash that lost the "
        f"watermark ({shipped[3]:,} shipped again); then 4 `PredictionWriter.write` batches "
        f"of 500 shipped + 500 new records each: the writer counted {added:,} new (expected "
        f"{new:,}).",
        f"Rows in the table: {rows:,} (expected {expected:,}). {keys.detail}.",
    ]
    res.replay = Check(
        "rollups = raw after replay",
        ok,
        f"{rows:,} rows / {expected:,} expected; {keys.detail.split(' (checked')[0]}",
    )


# -- the part -----------------------------------------------------------------------------


def run_analytics(
    args: argparse.Namespace, pg: Postgres, model: Path, work: Path
) -> AnalyticsResults:
    rows = args.analytics_rows
    url = pg.create_database("analytics")
    print(f"[D] analytics: loading {rows:,} rows over {DAYS} days")
    loaded = load(pg, url, rows)
    print(
        f"    {loaded.seconds:.0f} s, {loaded.rate:,.0f} rows/s, {loaded.rollup_rows:,} rollup "
        f"rows; VACUUM ANALYZE {loaded.analyze_s:.0f} s; {loaded.table_mb:,.0f} MB + "
        f"{loaded.rollups_mb:,.0f} MB"
    )
    res = AnalyticsResults(loaded)
    server = predictd_server("analytics", url, model, work / "analytics", record=False)
    try:
        server.wait_ready("/ready")
        wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
        time_api(server, res)
    finally:
        code = server.stop()
    if code not in (0, -signal.SIGTERM):
        res.server_notes.append(f"server exit status {code}")
    for t in res.api:
        print(f"    API {t.endpoint} {t.window}: p50 {t.p50:.1f} ms, p95 {t.p95:.1f} ms")
    wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
    time_sql(url, res)
    for t in res.naive:
        direct = res.timing("direct", t.endpoint, t.window)
        generic = res.timing("generic", t.endpoint, t.window)
        print(
            f"    naive {t.endpoint} {t.window}: median {t.p50:,.0f} ms (minute rollups alone "
            f"{direct.p50 if direct else float('nan'):.1f} ms, generic plan "
            f"{generic.p50 if generic else float('nan'):.1f} ms)"
        )
    compare_answers(res)
    print("    checking every rollup key against the raw rows")
    res.keys_check = check_keys(url, f"rollups = raw at {rows:,} rows")
    for c in [*res.checks, res.keys_check]:
        print(f"    {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})")
    pg.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    pg.created.remove(url.rsplit("/", 1)[1])
    print(f"[D] spool replay: {REPLAY_RECORDS:,} records")
    replay_check(pg, work / "replay-spool", REPLAY_RECORDS, res)
    assert res.replay is not None
    print(f"    {'ok' if res.replay.ok else 'FAILED'}: {res.replay.detail}")
    return res


# -- the report ---------------------------------------------------------------------------


def _ratio(res: AnalyticsResults, endpoint: str, window: str) -> float:
    api, naive = res.timing("api", endpoint, window), res.timing("naive", endpoint, window)
    return naive.p50 / api.p50 if api and naive and api.p50 else float("nan")


def timing_table(res: AnalyticsResults) -> list[str]:
    rows = []
    for window in windows(res.load):
        for endpoint in ENDPOINTS:
            api, naive = res.timing("api", endpoint, window), res.timing("naive", endpoint, window)
            direct = res.timing("direct", endpoint, window)
            generic = res.timing("generic", endpoint, window)
            if api is None or naive is None or direct is None or generic is None:
                continue
            counted = res.window_rows.get(window, {})
            rows.append(
                [
                    f"`/analytics/{endpoint}`",
                    window,
                    f"{counted.get('rollups', 0):,}",
                    f"{api.p50:.1f}",
                    f"{api.p95:.1f}",
                    f"{api.max:.1f}",
                    f"{direct.p50:.1f}",
                    f"{generic.p50:.1f}",
                    f"{counted.get('raw', 0):,}",
                    f"{naive.p50:,.0f}",
                    f"{min(naive.samples_ms):,.0f}-{max(naive.samples_ms):,.0f}",
                    f"{_ratio(res, endpoint, window):,.0f}x",
                ]
            )
    headers = ["endpoint", "window", "rollup rows", "p50 ms", "p95 ms", "max ms"]
    headers += ["minute rollups alone (SQL), p50 ms", "same, generic plan, p50 ms", "raw rows"]
    headers += ["naive ms (median)", "naive ms (runs)"]
    headers += ["naive / API (p50)"]
    return table(headers, rows)


def answers_table(res: AnalyticsResults) -> list[str]:
    rows = []
    for window, got in res.answers.items():
        api = got["api summary"]
        p95 = got.get("p95", {})
        bucket = p95.get("bucket", [None, None])
        rows.append(
            [
                window,
                f"{api['total']:,}",
                f"{api['errors']:,}",
                f"{api['cache_hit_rate']:.4f}" if api["cache_hit_rate"] is not None else "-",
                f"{api['avg_confidence']:.6f}" if api["avg_confidence"] is not None else "-",
                f"{api['avg_latency_ms']:.4f}" if api["avg_latency_ms"] is not None else "-",
                f"{api['p50_latency_ms']:.2f}" if api["p50_latency_ms"] is not None else "-",
                f"{p95.get('api') or 0:.2f}",
                f"{p95.get('exact') or 0:.2f} ({bucket[0]:g}-{bucket[1]:g} ms bucket)"
                if bucket[1] is not None
                else f"{p95.get('exact') or 0:.2f}",
                ", ".join(
                    f"{c['label']}: {c['count']:,}" for c in got["api distribution"]["labels"]
                ),
            ]
        )
    headers = ["window", "answered", "errors", "cache hit rate", "avg confidence"]
    headers += ["avg latency ms", "p50 ms", "p95 ms (histogram)", "p95 ms (exact, raw rows)"]
    headers += ["labels"]
    return table(headers, rows)


def section(args: argparse.Namespace, res: AnalyticsResults, preface: list[str]) -> list[str]:
    ld = res.load
    shares = "; ".join(
        f"from day {day:g}: "
        + ", ".join(f"{s.model} v{s.version} {s.variant} {100 * w:.0f}%" for s, w in streams)
        for day, streams in PHASES
    )
    checks = [*res.checks, *([res.keys_check] if res.keys_check else [])]
    out = [
        f"## D. Analytics at {ld.rows:,} rows",
        "",
        *preface,
        f"A fresh database (migrated by `predictd.db.migrate`) holding {ld.rows:,} synthetic "
        f"predictions over the {DAYS} days before {ld.end:%Y-%m-%d %H:%M} UTC, request volume "
        "following the time of day; seeded (the same draws every run, placed relative to its "
        "start). Three models: "
        "`sentiment` (3 labels, text inputs from the demo data set), `fraud` (2 labels, 3% "
        "`fraud`) and `churn` (labels 0/1), with a version change, a canary and a shadow "
        f"candidate ({shares}). Latencies lognormal per version (medians 1.2-8 ms) with "
        f"{100 * TAIL_RATE:g}% spikes of 20-300x; {100 * ERROR_RATE:g}% errors; cache hits on "
        "8% of sentiment and 2% of fraud answers. Ids are uuid7 of each row's time, like "
        "the server's.",
        "",
        f"Generated {CHUNK_ROWS:,} rows (whole minutes) at a time, never all in memory: each "
        "chunk encoded by the writer's own `_copy_tuple` and COPY'd (asyncpg "
        "`copy_records_to_table`) into `predictions`, its rollups built by the writer's own "
        "`rollup(records, into=acc)` and `rows_of` and COPY'd into `prediction_rollups` in "
        "the same transaction; the next chunk is generated while one is copied. The hourly "
        "tier (`prediction_rollups_hourly`) is then summed from the minute rollups by the "
        "database, as migration 0009 does for existing rows. Then "
        "`VACUUM (ANALYZE)` on both tables (what autovacuum would have done by then) and a "
        "CHECKPOINT.",
        "",
    ]
    out += table(
        [
            *("rows", "chunks", "load s", "rows/s", "generating s", "rollup rows"),
            *("VACUUM ANALYZE s", "predictions MB", "rollups MB"),
        ],
        [
            [
                f"{ld.rows:,}",
                f"{ld.chunks:,}",
                f"{ld.seconds:.0f}",
                f"{ld.rate:,.0f}",
                f"{ld.generate_s:.0f}",
                f"{ld.rollup_rows:,}",
                f"{ld.analyze_s:.0f}",
                f"{ld.table_mb:,.0f}",
                f"{ld.rollups_mb:,.0f}",
            ]
        ],
    )
    out += [
        "",
        "'generating s': time spent generating rows, building rollups and encoding COPY tuples "
        "(in a thread, overlapping the COPY); the load rate is bound by this synthetic "
        "generator as much as by PostgreSQL, so it is not an ingest figure (part B is).",
        "",
        f"### `GET /analytics/summary` and `/analytics/distribution`, {ld.rows:,} rows",
        "",
        f"A real `predictd serve` on that database; {API_CALLS} sequential calls per endpoint "
        f"and window over one keep-alive connection (httpx) after {API_WARMUP} unmeasured "
        "ones, each timed from send to body received. Windows `from`/`to` minute-aligned: "
        "the last 24 h and the whole 30 days, no model filter (shadow rows left out, as the "
        "API does). 'naive': the same figures straight from `predictions`, as analytics "
        "computed them before the rollups (COUNT/AVG with a p95 by `percentile_cont`, "
        f"and GROUP BY output; psycopg2, no HTTP), {NAIVE_RUNS} runs each. 'rollup SQL "
        "alone': the rollup queries the API runs, written out by hand and run the same way "
        f"({API_CALLS} runs): how much of the API's time is PostgreSQL's; 'generic plan': "
        "the same as a prepared statement on PostgreSQL's generic plan (`plan_cache_mode = "
        "force_generic_plan`), planned without the window's bounds, which the server's "
        "cached statements (asyncpg through SQLAlchemy) may settle on from their sixth "
        "execution. 'rollup rows' and 'raw rows': the rows of each table in the window "
        "(shadow left out); the rollups hold a row per minute, version, variant and label, so "
        "a window reads every minute's rows whatever the traffic.",
        "",
        *timing_table(res),
        "",
        "What the API answered (rollups); 'p95 ms (exact)' is `percentile_cont` over the raw "
        "rows: the histogram answers to a bucket's resolution.",
        "",
        *answers_table(res),
        "",
        "### Correctness",
        "",
        *[f"- **{c.name}**: {'equal' if c.ok else 'DIFFERENT'}; {c.detail}" for c in checks],
        f"- **Spool replay**: {'equal' if res.replay and res.replay.ok else 'DIFFERENT'}. "
        + " ".join(res.replay_detail),
        "",
        "'API = raw': answered, errors, cache hits, earliest/latest, average confidence and "
        "latency (to 1e-9) and every label's count, rollups through the API against the naive "
        "aggregates over the raw rows with the same conditions (status 'ok', variant not "
        "shadow, the minute-aligned window). 'rollups = raw': every row of "
        "`prediction_rollups` against a GROUP BY of `predictions` on the rollup key (minute, "
        "model, version, variant, label): counts, errors, cache hits, confidence and latency "
        "sums, first/last ts, every latency bucket and confidence bin, and no key on one side "
        "only.",
        "",
    ]
    out += [f"- {n}" for n in res.server_notes]
    return out


def verdicts(res: AnalyticsResults) -> list[Verdict]:
    out = []
    for window in windows(res.load):
        for endpoint in ENDPOINTS:
            api = res.timing("api", endpoint, window)
            if api is None:
                continue
            out.append(
                Verdict(
                    f"analytics, {endpoint} p50, {window}, {res.load.rows:,} rows",
                    f"< {TARGET_P50_MS:g} ms",
                    f"{api.p50:.1f} ms (naive {_naive_p50(res, endpoint, window):,.0f} ms, "
                    f"{_ratio(res, endpoint, window):,.0f}x)",
                    api.p50 < TARGET_P50_MS,
                )
            )
    checks = [*res.checks, *([res.keys_check] if res.keys_check else [])]
    out.append(
        Verdict(
            f"analytics, rollups = raw at {res.load.rows:,} rows",
            "API = raw aggregates; every rollup key",
            f"{sum(c.ok for c in checks)}/{len(checks)} checks equal"
            + (f"; {res.keys_check.detail.split(' (checked')[0]}" if res.keys_check else ""),
            bool(checks) and all(c.ok for c in checks),
        )
    )
    if res.replay is not None:
        out.append(
            Verdict(
                "analytics, rollups = raw after a spool replay",
                "every key equal, no row twice",
                res.replay.detail,
                res.replay.ok,
            )
        )
    return out


def _naive_p50(res: AnalyticsResults, endpoint: str, window: str) -> float:
    naive = res.timing("naive", endpoint, window)
    return naive.p50 if naive else float("nan")


def raw(res: AnalyticsResults) -> dict[str, Any]:
    def timings(ts: list[Timing]) -> list[dict[str, Any]]:
        return [asdict(t) | {"p50": t.p50, "p95": t.p95, "max": t.max} for t in ts]

    answers = {
        w: {k: v for k, v in got.items() if not k.startswith("raw")}
        for w, got in res.answers.items()
    }
    return {
        "load": asdict(res.load) | {"rate": res.load.rate},
        "api": timings(res.api),
        "naive": timings(res.naive),
        "direct": timings(res.direct),
        "generic": timings(res.generic),
        "window_rows": res.window_rows,
        "answers": answers,
        "checks": [asdict(c) for c in res.checks],
        "keys_check": asdict(res.keys_check) if res.keys_check else None,
        "replay": asdict(res.replay) if res.replay else None,
        "replay_detail": res.replay_detail,
    }
