"""Part B: how fast the recorder gets records into PostgreSQL, with no HTTP in the way.

1. ``PredictionWriter.write`` alone, in batches of ``record_batch`` records, one after the
   other, then ``record_concurrency`` at a time (what the shipper does when it is behind);
2. the whole ``PredictionRecorder`` in ``process`` durability: every record goes through
   ``record()`` one at a time, as ``/predict`` hands it over (a write(2) to the spool, then the
   in-memory queue), and the shipper task commits batches to the database. The clock stops
   when the spool's committed watermark reaches the last record. Two producers:
   * paced: the producer never lets the backlog exceed half of ``record_queue_max``, so the
     shipper always finds its records in memory (the sustained rate);
   * burst: all records as fast as ``record()`` takes them; beyond ``record_queue_max`` the
     shipper has to read them back from the spool (the catch-up path after a spike or an
     outage);
   * burst, N per call: the same with ``record()`` taking N records a call, as ``/batch``
     does, so the producer's per-call cost stops hiding the shipper's rate.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from uuid_utils.compat import uuid7

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.demo.train import load_sentiment_data
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings

T = TypeVar("T")
CLASSES = ("negative", "neutral", "positive")
# How many record() calls the producer makes before letting the event loop run the shipper
# (a busy server interleaves requests and the shipper about this finely).
PRODUCER_CHUNK = 64


@dataclass(frozen=True)
class IngestResult:
    name: str
    records: int
    batch: int
    seconds: float
    rows_in_db: int
    detail: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def make_records(count: int, seed: int = 0) -> list[PredictionRecord]:
    """Records shaped like the ones /predict builds for the demo sentiment model."""
    rng = random.Random(seed)
    texts, _ = load_sentiment_data()
    now = datetime.now(UTC)
    records = []
    for _ in range(count):
        weights = [rng.random() for _ in CLASSES]
        total = sum(weights)
        probabilities = {c: w / total for c, w in zip(CLASSES, weights, strict=True)}
        label = max(probabilities, key=lambda c: probabilities[c])
        records.append(
            PredictionRecord(
                id=uuid7(),
                ts=now,
                model_name="sentiment",
                model_version=1,
                variant="production",
                request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                batch_id=None,
                input={"text": rng.choice(texts)},
                output=label,
                confidence=probabilities[label],
                probabilities=probabilities,
                latency_ms=rng.uniform(0.3, 3.0),
                cache_hit=False,
                status="ok",
                error=None,
                client_ip="127.0.0.1",
                user_agent="python-httpx/0.28.1",
            )
        )
    return records


def _settings(database_url: str, spool_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        durability="process",
        spool_dir=spool_dir,
        log_level="WARNING",
    )


async def _count(db: Database) -> int:
    async with db.engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT count(*) FROM predictions")
        return int(result.scalar_one())


async def _truncate(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE predictions")
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql("CHECKPOINT")  # start each run with no dirty buffers


async def bench_writer(
    db: Database, settings: Settings, count: int, *, in_flight: int
) -> IngestResult:
    """``count`` records through ``PredictionWriter.write`` in ``record_batch`` batches,
    ``in_flight`` batches at a time (each call takes its own pooled connection)."""
    batch = settings.recording.batch
    records = make_records(count, seed=1)
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    writer = PredictionWriter(db)
    # Open the pool's connections before the clock starts; not part of the figure.
    await asyncio.gather(*(writer.write(make_records(1, seed=9 + k)) for k in range(in_flight)))
    await _truncate(db)
    pending = iter(batches)

    async def drain() -> None:
        for chunk in pending:
            await writer.write(chunk)

    started = time.perf_counter()
    await asyncio.gather(*(drain() for _ in range(in_flight)))
    seconds = time.perf_counter() - started
    return IngestResult(
        f"PredictionWriter.write, {in_flight} in flight",
        count,
        batch,
        seconds,
        await _count(db),
        f"{len(batches)} transactions, {in_flight} at a time"
        + (" (as the shipper with record_concurrency)" if in_flight > 1 else ""),
    )


async def bench_recorder(
    db: Database,
    settings: Settings,
    count: int,
    *,
    max_backlog: int | None,
    per_call: int = 1,
) -> IngestResult:
    records = make_records(count, seed=2)
    await _truncate(db)
    recorder = PredictionRecorder(settings.recording, PredictionWriter(db), Metrics.create())
    recorder.start()
    try:
        await _count(db)  # the engine's pool is connected before the clock starts
        started = time.perf_counter()
        in_record = 0.0
        peak = 0
        for i in range(0, count, PRODUCER_CHUNK):
            t0 = time.perf_counter()
            chunk = records[i : i + PRODUCER_CHUNK]
            for k in range(0, len(chunk), per_call):
                await recorder.record(chunk[k : k + per_call])
            in_record += time.perf_counter() - t0
            await asyncio.sleep(0)
            state = recorder.state()
            backlog = state.last_lsn - state.committed_lsn
            peak = max(peak, backlog)
            while max_backlog is not None and backlog > max_backlog:
                await asyncio.sleep(0.001)
                state = recorder.state()
                backlog = state.last_lsn - state.committed_lsn
        produced = time.perf_counter() - started
        last = recorder.state().last_lsn
        while recorder.state().committed_lsn < last:
            if recorder.database_ok is False:
                raise RuntimeError(f"recorder cannot write: {recorder.last_error}")
            await asyncio.sleep(0.002)
        seconds = time.perf_counter() - started
    finally:
        await recorder.close()
    if max_backlog is None:
        name = "PredictionRecorder, burst" + (f", {per_call} per call" if per_call > 1 else "")
    else:
        name = f"PredictionRecorder, paced (backlog <= {max_backlog:,})"
    return IngestResult(
        name,
        count,
        settings.recording.batch,
        seconds,
        await _count(db),
        f"record() {in_record / count * 1e6 * per_call:.1f} us per call of {per_call}; "
        "all handed over after "
        f"{produced:.2f} s; peak backlog {peak:,} (queue holds {settings.recording.queue_max:,})",
    )


async def _run_all(database_url: str, spool_dir: Path, count: int) -> tuple[IngestResult, ...]:
    settings = _settings(database_url, spool_dir)
    db = Database(settings.database, writer_connections=settings.recording.concurrency)
    try:
        await migrate.upgrade(db)
        writer = await bench_writer(db, settings, count, in_flight=1)
        writers = await bench_writer(
            db, settings, count, in_flight=max(2, settings.recording.concurrency)
        )
        paced = await bench_recorder(
            db,
            settings.replace(spool_dir=spool_dir / "paced"),
            count,
            max_backlog=settings.recording.queue_max // 2,
        )
        burst = await bench_recorder(
            db,
            settings.replace(spool_dir=spool_dir / "burst"),
            count,
            max_backlog=None,
        )
        batched = await bench_recorder(
            db,
            settings.replace(spool_dir=spool_dir / "batched"),
            count,
            max_backlog=None,
            per_call=min(PRODUCER_CHUNK, settings.inference.max_batch),
        )
        await _truncate(db)
        return writer, writers, paced, burst, batched
    finally:
        await db.dispose()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop, like `predictd serve` (uvicorn picks it when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_ingest(database_url: str, spool_dir: Path, count: int) -> tuple[IngestResult, ...]:
    return _run(_run_all(database_url, spool_dir, count))
