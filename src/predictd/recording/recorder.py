"""PredictionRecorder: takes records off the request path and gets them into the database.

``record()`` is the only thing a request awaits, and what it awaits depends on durability:
nothing (`memory`), a write(2) to the spool (`process`), or a group-committed fsync
(`strict`). A single shipper task then drains records in LSN order — from the in-memory queue
when it holds the next ones, otherwise back from the spool — writes each batch in one
transaction, and advances the spool's committed watermark. While the database fails it backs
off with jitter; the spool holds everything meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from predictd.db.errors import is_row_error
from predictd.errors import SpoolFull
from predictd.observability import Metrics
from predictd.recording.record import PredictionRecord, row_from_bytes
from predictd.recording.repository import PredictionWriter
from predictd.recording.spool import RecoveryReport, Spool
from predictd.settings import Settings

log = logging.getLogger("predictd.recorder")


@dataclass(frozen=True)
class RecorderState:
    queue_depth: int
    spool_bytes: int
    last_lsn: int
    committed_lsn: int
    database_ok: bool | None
    last_error: str | None


class PredictionRecorder:
    def __init__(self, settings: Settings, writer: PredictionWriter, metrics: Metrics) -> None:
        self.settings = settings
        self.writer = writer
        self.metrics = metrics
        self.durability = settings.durability
        self.spool: Spool | None = None
        if self.durability != "memory":
            self.spool = Spool(
                settings.spool_dir,
                segment_bytes=settings.spool_segment_bytes,
                max_bytes=settings.spool_max_bytes,
                fsync=self.durability == "strict",
            )
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._next_lsn = 0  # memory mode only; the spool numbers records otherwise
        self._shipped_lsn = -1
        self._task: asyncio.Task[None] | None = None
        self.database_ok: bool | None = None
        self.last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> RecoveryReport | None:
        report = None
        if self.spool is not None:
            report = self.spool.open()
            self._shipped_lsn = self.spool.committed_lsn
            self.metrics.records_quarantined.inc(report.quarantined)
            if report.records or report.quarantined or report.torn_bytes:
                log.info(
                    "spool recovered",
                    extra={
                        "records": report.records,
                        "pending_from_lsn": report.pending_from_lsn,
                        "quarantined": report.quarantined,
                        "torn_bytes": report.torn_bytes,
                    },
                )
        self._publish_gauges()
        self._task = asyncio.create_task(self._ship_forever(), name="predictd-shipper")
        return report

    async def close(self) -> None:
        """Ship what can be shipped within ``shutdown_flush_s``; the spool keeps the rest."""
        deadline = time.monotonic() + self.settings.shutdown_flush_s
        while self._backlog() and time.monotonic() < deadline and self.database_ok is not False:
            self._wakeup.set()
            await asyncio.sleep(0.01)
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.spool is not None:
            self.spool.close()
        if self._queue and self.spool is None:
            log.warning("recorder: unshipped records lost", extra={"records": len(self._queue)})

    # -- the request side ----------------------------------------------------------------

    async def record(self, records: Sequence[PredictionRecord]) -> bool:
        """Make ``records`` as durable as the setting promises. Returns False when they were
        shed (answered unrecorded); raises SpoolFull under the reject policy."""
        rows = [r.to_row() for r in records]
        if self.spool is None:
            if len(self._queue) + len(rows) > self.settings.record_queue_max:
                return self._refuse(len(rows), "recorder queue is full")
            first = self._next_lsn
            self._next_lsn += len(rows)
        else:
            if self.spool.full:
                return self._refuse(len(rows), "spool is full")
            first = self.spool.append([r.to_bytes() for r in records])
            self.metrics.spool_bytes.set(self.spool.pending_bytes)
        if len(self._queue) + len(rows) <= self.settings.record_queue_max:
            self._queue.extend((first + i, row) for i, row in enumerate(rows))
        # else: the records are safe in the spool; the shipper reads them back from disk
        self.metrics.recorder_queue_depth.set(len(self._queue))
        self._wakeup.set()
        if self.spool is not None and self.durability == "strict":
            await self.spool.sync()
        return True

    def _refuse(self, count: int, why: str) -> bool:
        if self.settings.spool_full_policy == "reject":
            raise SpoolFull(f"{why}: predictions are refused until the database catches up")
        self.metrics.records_unrecorded.inc(count)
        log.warning("recorder: answered without recording", extra={"records": count, "why": why})
        return False

    # -- the shipper ---------------------------------------------------------------------

    def _last_lsn(self) -> int:
        return self.spool.last_lsn if self.spool is not None else self._next_lsn - 1

    def _backlog(self) -> int:
        return self._last_lsn() - self._shipped_lsn

    def state(self) -> RecorderState:
        return RecorderState(
            queue_depth=len(self._queue),
            spool_bytes=self.spool.pending_bytes if self.spool is not None else 0,
            last_lsn=self._last_lsn(),
            committed_lsn=self._shipped_lsn,
            database_ok=self.database_ok,
            last_error=self.last_error,
        )

    async def _ship_forever(self) -> None:
        while not self._stopping.is_set():
            if not self._backlog():
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._backlog() < self.settings.record_batch and self.settings.record_flush_ms:
                await asyncio.sleep(self.settings.record_flush_ms / 1000)
            batch = await self._next_batch()
            if not batch:
                await asyncio.sleep(0.01)
                continue
            try:
                await self._ship(batch)
            except Exception:
                if self._stopping.is_set():
                    return  # the spool keeps the batch for the next start
                log.exception("recorder: unexpected shipper failure; retrying")
                await self._sleep_unless_stopping(1.0)

    async def _next_batch(self) -> list[tuple[int, dict[str, Any]]]:
        while self._queue and self._queue[0][0] <= self._shipped_lsn:
            self._queue.popleft()
        limit = self.settings.record_batch
        want = self._shipped_lsn + 1
        if self._queue and self._queue[0][0] == want:
            batch: list[tuple[int, dict[str, Any]]] = []
            while self._queue and len(batch) < limit and self._queue[0][0] == want + len(batch):
                batch.append(self._queue.popleft())
            self.metrics.recorder_queue_depth.set(len(self._queue))
            return batch
        if self.spool is None:
            return []
        # A gap: those records overflowed the queue or predate this process. Read them back.
        until = self._queue[0][0] - 1 if self._queue else self.spool.last_lsn
        spool = self.spool
        frames = await asyncio.to_thread(spool.read, self._shipped_lsn, until, limit)
        return [(lsn, row_from_bytes(payload)) for lsn, payload in frames]

    async def _ship(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        rows = [row for _, row in batch]
        async for attempt in AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.05, max=self.settings.record_retry_max_s),
            retry=retry_if_exception(lambda e: not is_row_error(e)),
            sleep=self._sleep_unless_stopping,
            stop=lambda _state: self._stopping.is_set(),
            reraise=True,
        ):
            with attempt:
                try:
                    await self._write(rows)
                except Exception as exc:
                    self._note_failure(exc)
                    raise
        self.database_ok, self.last_error = True, None
        self._shipped_lsn = batch[-1][0]
        if self.spool is not None:
            self.spool.commit(self._shipped_lsn)
        self.metrics.records_shipped.inc(len(rows))
        self._publish_gauges()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        """Write rows; a batch holding a bad row is split until the bad row stands alone."""
        try:
            await self.writer.write(rows)
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(rows) == 1:
                log.error(
                    "recorder: dropped a row the database refuses",
                    extra={"id": str(rows[0]["id"]), "error": str(exc)[:200]},
                )
                self.metrics.records_quarantined.inc()
                return
            half = len(rows) // 2
            await self._write(rows[:half])
            await self._write(rows[half:])

    def _note_failure(self, exc: BaseException) -> None:
        if self.database_ok is not False:
            log.warning("recorder: database write failed; spooling", extra={"error": repr(exc)})
        self.database_ok = False
        self.last_error = type(exc).__name__
        self.metrics.db_write_errors.inc()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _publish_gauges(self) -> None:
        self.metrics.recorder_queue_depth.set(len(self._queue))
        if self.spool is not None:
            self.metrics.spool_bytes.set(self.spool.pending_bytes)
