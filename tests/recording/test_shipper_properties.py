"""Property test of the shipper on the real databases, under injected failures: before a
batch is sent, after it was sent but before the commit reply came back (the rows are in, the
shipper does not know), and a crash after the commit before the watermark advanced (the next
process replays from the spool). Every record id lands exactly once, with the payload it was
first spooled with."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from predictd.db.engine import Database
from predictd.db.tables import predictions
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings
from tests.recording.test_recorder import make_record, migrated

Fault = str  # "ok" | "before" (nothing sent) | "after" (committed, reply lost)


class FaultyWriter(PredictionWriter):
    """The real writer, with failures injected around the real write, in plan order."""

    def __init__(self, db: Database, plan: Sequence[Fault] = ()) -> None:
        super().__init__(db)
        self.plan = list(plan)
        self.down = False

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        fault = self.plan.pop(0) if self.plan else "ok"
        if self.down or fault == "before":
            raise ConnectionRefusedError("injected: database unreachable")
        written = await super().write(records)
        if fault == "after":
            raise ConnectionResetError("injected: connection lost before the commit reply")
        return written


def recorder_settings(url: str, spool: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "spool_dir": spool,
        "durability": "process",
        "record_flush_ms": 1,
        "record_batch": 7,
        "record_retry_max_s": 0.02,
        "shutdown_flush_s": 0.5,
        "log_format": "text",
    }
    return Settings(**(values | overrides))


async def stored(db: Database, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    found: dict[uuid.UUID, list[Any]] = {i: [] for i in ids}
    async with db.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = await conn.execute(
                select(predictions.c.id, predictions.c.input, predictions.c.output).where(
                    predictions.c.id.in_(ids[start : start + 500])
                )
            )
            for row in rows:
                found[row[0]].append((row[1], row[2]))
    return found


async def shipped(recorder: PredictionRecorder, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while recorder.state().committed_lsn < recorder.state().last_lsn:
        assert time.monotonic() < deadline, recorder.state()
        await asyncio.sleep(0.005)


PROPERTY = settings(
    max_examples=25,
    derandomize=True,  # the same examples on every run: CI is not a lottery
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@PROPERTY
@given(
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=10),
    plan=st.lists(st.sampled_from(["ok", "before", "after"]), max_size=12),
    crash_after_commit=st.booleans(),
)
def test_every_id_lands_once_with_its_first_payload(
    db_url: str, sizes: list[int], plan: list[Fault], crash_after_commit: bool
) -> None:
    asyncio.run(_shipper_run(db_url, sizes, plan, crash_after_commit))


async def _shipper_run(
    url: str, sizes: list[int], plan: list[Fault], crash_after_commit: bool
) -> None:
    await migrated(url)
    spool = Path(tempfile.mkdtemp(prefix="shipper-"))
    db = Database(Settings(database_url=url).database)
    try:
        config = recorder_settings(url, spool)
        records = [make_record(id=uuid.uuid4(), input={"text": f"t{n}"}, output=f"o{n}")
                   for n in range(sum(sizes))]  # fmt: skip
        first = PredictionRecorder(config.recording, FaultyWriter(db, plan), Metrics.create())
        if crash_after_commit:
            # Rows commit, but the watermark never moves: what a crash right after each
            # commit leaves behind.
            first._advance_watermark = lambda: None  # type: ignore[method-assign]
        first.start()
        offset = 0
        for size in sizes:
            assert await first.record(records[offset : offset + size])
            offset += size
        if crash_after_commit:  # every row committed, none marked so in the spool
            deadline = time.monotonic() + 20
            while not all((await stored(db, [r.id for r in records])).values()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        else:
            await shipped(first)
        await first.close()

        second = PredictionRecorder(config.recording, FaultyWriter(db), Metrics.create())
        second.start()  # replays whatever the spool says is not yet committed
        await shipped(second)
        await second.close()

        rows = await stored(db, [r.id for r in records])
        for record in records:
            assert rows[record.id] == [(record.input, record.output)], record.id
    finally:
        await db.dispose()
        shutil.rmtree(spool, ignore_errors=True)


pytestmark = pytest.mark.timeout(120)
