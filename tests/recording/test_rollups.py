"""prediction_rollups stay equal to aggregates of the raw rows: after random batches, after
replays (whole and partly new), with two writers racing, and after the migration's backfill.
Checked against SQL aggregates over `predictions`, not against the rollup code itself."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, case, func, select

from predictd.analytics.histogram import percentile
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import (
    CONFIDENCE_COLUMNS,
    HISTOGRAM_COLUMNS,
    LATENCY_BOUNDS_MS,
    prediction_rollups,
    prediction_rollups_hourly,
    predictions,
)
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings
from tests.recording.test_recorder import make_record

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LABELS: list[Any] = ["positive", "negative", 1, True]


def random_records(rng: random.Random, count: int) -> list[PredictionRecord]:
    out = []
    for _ in range(count):
        ok = rng.random() > 0.1
        regression = rng.random() < 0.1
        output = round(rng.uniform(0, 100), 3) if regression else rng.choice(LABELS)
        out.append(
            make_record(
                id=uuid.uuid4(),
                ts=START + timedelta(seconds=rng.uniform(0, 300)),
                model_name=rng.choice(["a", "b"]),
                model_version=rng.choice([1, 2]),
                variant=rng.choice(["production", "canary", "shadow"]),
                output=output if ok else None,
                confidence=None if regression or not ok else rng.random(),
                probabilities=None if regression or not ok else {"x": 1.0},
                latency_ms=rng.choice([0.5, 1.0, 2.5, 9.9, 10.0, 480.0, 9000.0])
                * rng.uniform(0.9, 1.1),
                cache_hit=rng.random() < 0.3,
                status="ok" if ok else "error",
                error=None if ok else "boom",
            )
        )
    return out


GROUP = (predictions.c.model_name, predictions.c.model_version, predictions.c.variant)


async def raw_totals(db: Database) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    p = predictions.c
    ok = p.status == "ok"
    below = [
        func.sum(case((ok & (p.latency_ms <= bound), 1), else_=0)) for bound in LATENCY_BOUNDS_MS
    ]
    bins = [
        func.sum(case((ok & (p.confidence >= i / 10) & (p.confidence < (i + 1) / 10), 1), else_=0))
        for i in range(9)
    ] + [func.sum(case((ok & (p.confidence >= 0.9), 1), else_=0))]
    query = select(
        *GROUP,
        *bins,
        func.sum(case((ok, 1), else_=0)),
        func.sum(case((ok, 0), else_=1)),
        func.sum(case((ok & p.cache_hit, 1), else_=0)),
        func.sum(case((ok, p.confidence), else_=None)),
        func.sum(case((ok, p.latency_ms), else_=None)),
        func.min(p.ts),
        func.max(p.ts),
        *below,
    ).group_by(*GROUP)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {tuple(r[:3]): _rounded(r[3:]) for r in rows}


async def rollup_totals(
    db: Database, table: Table = prediction_rollups
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    r = table.c
    group = (r.model_name, r.model_version, r.variant)
    histogram = [r[name] for name in HISTOGRAM_COLUMNS]
    cumulative = [func.sum(sum(histogram[: i + 1])) for i in range(len(LATENCY_BOUNDS_MS))]
    query = select(
        *group,
        *(func.sum(r[name]) for name in CONFIDENCE_COLUMNS),
        func.sum(r.count),
        func.sum(r.errors),
        func.sum(r.cache_hits),
        func.sum(r.confidence_sum),
        func.sum(r.latency_sum),
        func.min(r.first_ts),
        func.max(r.last_ts),
        *cumulative,
    ).group_by(*group)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {tuple(row[:3]): _rounded(row[3:]) for row in rows}


def _rounded(values: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, float):
            out.append(round(v, 6))
        elif isinstance(v, datetime):
            out.append(v if v.tzinfo else v.replace(tzinfo=UTC))
        elif isinstance(v, str):  # SQLite's min/max over a timestamp column
            ts = datetime.fromisoformat(v)
            out.append(ts if ts.tzinfo else ts.replace(tzinfo=UTC))
        else:
            out.append(None if v is None else int(v))
    return tuple(out)


async def assert_rollups_match(db: Database) -> None:
    raw = await raw_totals(db)
    assert raw, "no rows were written"
    want = {k: tuple(0.0 if x is None else x for x in v) for k, v in raw.items()}
    assert await rollup_totals(db) == want
    assert await rollup_totals(db, prediction_rollups_hourly) == want


async def test_random_batches_and_replays(db: Database) -> None:
    rng = random.Random(7)
    writer = PredictionWriter(db)
    written: list[PredictionRecord] = []
    for _ in range(30):
        batch = random_records(rng, rng.randint(1, 60))
        assert await writer.write(batch) == len(batch)
        written += batch
    await assert_rollups_match(db)

    # Replays: a whole batch again (nothing new), and batches mixing old and new ids.
    assert await writer.write(written[:40]) == 0
    for _ in range(5):
        fresh = random_records(rng, 10)
        mixed = rng.sample(written, 15) + fresh
        rng.shuffle(mixed)
        assert await writer.write(mixed) == len(fresh)
        written += fresh
    await assert_rollups_match(db)
    async with db.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(predictions))).scalar()
    assert total == len(written)


async def test_two_writers_racing_stay_exact(db: Database, db_url: str) -> None:
    rng = random.Random(11)
    other = Database(Settings(database_url=db_url).database)
    try:
        batches = [random_records(rng, rng.randint(20, 80)) for _ in range(20)]

        async def write_all(writer: PredictionWriter, order: list[int]) -> int:
            return sum([await writer.write(batches[i]) for i in order])

        # Both writers write every batch (the same minutes and labels), in different orders.
        counts = await asyncio.gather(
            write_all(PredictionWriter(db), list(range(20))),
            write_all(PredictionWriter(other), list(range(19, -1, -1))),
        )
        assert sum(counts) == sum(len(b) for b in batches)
        await assert_rollups_match(db)
    finally:
        await other.dispose()


async def test_the_migration_backfills_rows_recorded_before_it(db: Database) -> None:
    rng = random.Random(3)
    assert await PredictionWriter(db).write(random_records(rng, 500)) == 500
    await migrate.downgrade(db, "0003")
    await migrate.upgrade(db)
    await assert_rollups_match(db)


def test_percentiles_from_the_histogram() -> None:
    histogram = [0] * len(HISTOGRAM_COLUMNS)
    assert percentile(histogram, 0.5) is None
    histogram[5] = 100  # 100 latencies in (7, 10] ms
    assert percentile(histogram, 0.5) == pytest.approx(8.5)
    assert percentile(histogram, 0.99) == pytest.approx(9.97)
    histogram[-1] = 100  # and 100 slower than the last bound
    assert percentile(histogram, 0.99) == LATENCY_BOUNDS_MS[-1]
