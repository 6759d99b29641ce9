"""PredictionRecorder: takes records off the request path and gets them into the database.

``record()`` is the only thing a request awaits, and what it awaits depends on durability:
nothing (`memory`), a write(2) to the spool (`process`), or a group-committed fsync
(`strict`). The shipper then cuts records into batches in LSN order — from the in-memory queue
when it holds the next ones, otherwise back from the spool — and writes each batch in one
transaction, up to ``record_concurrency`` batches at a time on separate connections (the
database overlaps one batch's commit with the next one's COPY). The committed watermark only
advances over a gap-free prefix of committed batches, so the spool never drops a record the
database lacks. While the database fails, each batch backs off with jitter and retries; the
spool holds everything meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from predictd.db.errors import is_row_error
from predictd.errors import NotDurable, SpoolFull
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.recording.spool import NoSpace, RecoveryReport, Spool
from predictd.settings import RecordingSettings

log = logging.getLogger("predictd.recorder")


@dataclass(frozen=True)
class RecorderState:
    queue_depth: int
    spool_bytes: int
    last_lsn: int
    committed_lsn: int
    database_ok: bool | None
    last_error: str | None


class _Batch:
    __slots__ = ("done", "last_lsn", "records")

    def __init__(self, records: list[PredictionRecord], last_lsn: int) -> None:
        self.records = records
        self.last_lsn = last_lsn
        self.done = False


ADOPT_INTERVAL_S = 10.0


class PredictionRecorder:
    def __init__(
        self,
        settings: RecordingSettings,
        writer: PredictionWriter,
        metrics: Metrics,
        *,
        orphan: Path | None = None,
    ) -> None:
        """``orphan``: ship what a dead process left in that spool directory, and nothing
        else (no request side, no gauges)."""
        self.settings = settings
        self.writer = writer
        self.metrics = metrics
        self.durability = "process" if orphan is not None else settings.durability
        self.orphan = orphan
        self.spool: Spool | None = None
        if self.durability != "memory":
            self.spool = Spool(
                settings.spool_dir,
                segment_bytes=settings.spool_segment_bytes,
                max_bytes=settings.spool_max_bytes,
                fsync=self.durability == "strict",
                directory=orphan,
            )
        self._queue: deque[tuple[int, PredictionRecord]] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = asyncio.Event()  # close() has begun: no more waiting to fill batches
        self._next_lsn = 0  # memory mode only; the spool numbers records otherwise
        self._shipped_lsn = -1  # everything up to here is in the database
        self._dispatched_lsn = -1  # everything up to here is in a batch being written
        self._in_flight: deque[_Batch] = deque()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._writers: set[asyncio.Task[None]] = set()
        self.database_ok: bool | None = None
        self.last_error: str | None = None
        self._adopter: asyncio.Task[None] | None = None
        self.drained = asyncio.Event()  # all shipped (an orphan's heir: it records nothing new)
        if orphan is None:
            # Read at scrape time, so the request path pays nothing for them.
            metrics.sample(metrics.recorder_queue_depth, lambda: len(self._queue))
            metrics.sample(
                metrics.spool_bytes,
                lambda: self.spool.pending_bytes if self.spool is not None else 0,
            )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> RecoveryReport | None:
        report = None
        if self.spool is not None:
            report = self.spool.open()
            self._shipped_lsn = self._dispatched_lsn = self.spool.committed_lsn
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
        self._task = asyncio.create_task(self._dispatch_forever(), name="predictd-shipper")
        if self.spool is not None and self.orphan is None:
            self._adopter = asyncio.create_task(self._adopt_forever(), name="predictd-adopter")
        return report

    async def _adopt_forever(self) -> None:
        """Ship what dead processes left in spool directories nobody holds any more: a
        worker that died and was not replaced, a restart with fewer workers. A directory a
        live process holds refuses the claim and is skipped."""
        assert self.spool is not None
        while not self._stopping.is_set():
            for directory in self.spool.orphans():
                await self._adopt(directory)
            await self._sleep_unless_stopping(ADOPT_INTERVAL_S)

    async def _adopt(self, directory: Path) -> None:
        heir = PredictionRecorder(self.settings, self.writer, self.metrics, orphan=directory)
        try:
            heir.start()
        except BlockingIOError:
            return  # a live process holds it
        if heir._backlog():
            log.info(
                "shipping an orphaned spool",
                extra={"directory": str(directory), "records": heir._backlog()},
            )
        try:
            while heir._backlog() and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):  # stopping is checked every second
                    await asyncio.wait_for(heir.drained.wait(), timeout=1.0)
        finally:
            await heir.close()

    async def close(self) -> None:
        """Ship what can be shipped within ``shutdown_flush_s``; the spool keeps the rest."""
        deadline = time.monotonic() + self.settings.shutdown_flush_s
        self._draining.set()
        while self._backlog() and time.monotonic() < deadline and self.database_ok is not False:
            self._wakeup.set()
            await asyncio.sleep(0.01)
        self._stopping.set()
        self._wakeup.set()
        tasks = [t for t in (self._task, self._adopter, *self._writers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.spool is not None:
            self.spool.close()
        elif self._backlog():
            log.warning("recorder: unshipped records lost", extra={"records": self._backlog()})

    # -- the request side ----------------------------------------------------------------

    async def record(self, records: Sequence[PredictionRecord]) -> bool:
        """Make ``records`` as durable as the setting promises. Returns False when they were
        shed (answered unrecorded); raises SpoolFull under the reject policy."""
        count = len(records)
        queue = self._queue
        if self.spool is None:
            if len(queue) + count > self.settings.queue_max:
                return self._refuse(count, "recorder queue is full")
            first = self._next_lsn
            self._next_lsn += count
        else:
            if self.spool.full:
                return self._refuse(count, "spool is full")
            try:
                first = self.spool.append([r.to_bytes() for r in records])
            except NoSpace:
                return self._refuse(count, "the spool's disk is full")
            except OSError as exc:
                log.error("recorder: spool write failed", extra={"error": str(exc)})
                raise NotDurable("the prediction could not be written to the spool") from exc
        if len(queue) + count <= self.settings.queue_max:
            if count == 1:
                queue.append((first, records[0]))
            else:
                queue.extend((first + i, r) for i, r in enumerate(records))
        # else: the records are safe in the spool; the shipper reads them back from disk
        self._wakeup.set()
        if self.spool is not None and self.durability == "strict":
            await self.spool.sync()
            self._wakeup.set()  # synced: the shipper may take these now
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

    def _shippable_lsn(self) -> int:
        """In strict mode only what an fsync round covered is shipped: a record whose sync
        failed was answered 503 and must not reach the database behind that answer."""
        if self.spool is not None and self.durability == "strict":
            return self.spool.synced_lsn
        return self._last_lsn()

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

    async def _dispatch_forever(self) -> None:
        """Cut batches in LSN order and hand each to a writer task, a few at a time."""
        while not self._stopping.is_set():
            undispatched = self._shippable_lsn() - self._dispatched_lsn
            if not undispatched:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if undispatched < self.settings.batch and self.settings.flush_ms:
                with contextlib.suppress(TimeoutError):  # close() cuts the wait short
                    await asyncio.wait_for(self._draining.wait(), self.settings.flush_ms / 1000)
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except Exception:
                self._slots.release()
                log.exception("recorder: could not read the spool; retrying")
                await self._sleep_unless_stopping(1.0)
                continue
            if batch is None:
                self._slots.release()
                await asyncio.sleep(0.01)
                continue
            self._dispatched_lsn = batch.last_lsn
            self._in_flight.append(batch)
            task = asyncio.create_task(self._ship(batch))
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)

    async def _next_batch(self) -> _Batch | None:
        queue = self._queue
        while queue and queue[0][0] <= self._dispatched_lsn:
            queue.popleft()
        limit = self.settings.batch
        want = self._dispatched_lsn + 1
        bound = self._shippable_lsn()
        spool = self.spool
        void = spool.is_void if spool is not None and spool.has_void else None
        if queue and queue[0][0] == want:
            records: list[PredictionRecord] = []
            lsn = want
            while queue and len(records) < limit and queue[0][0] == lsn and lsn <= bound:
                record = queue.popleft()[1]
                if void is None or not void(lsn):
                    records.append(record)
                lsn += 1
            return _Batch(records, lsn - 1) if lsn > want else None
        if spool is None:
            return None
        # A gap: those records overflowed the queue or predate this process. Read them back.
        until = min(queue[0][0] - 1 if queue else spool.last_lsn, bound)
        frames = await asyncio.to_thread(spool.read, self._dispatched_lsn, until, limit)
        if not frames:
            return None
        kept = [
            PredictionRecord.from_bytes(p) for lsn, p in frames if void is None or not void(lsn)
        ]
        return _Batch(kept, frames[-1][0])

    async def _ship(self, batch: _Batch) -> None:
        try:
            async for attempt in AsyncRetrying(
                wait=wait_random_exponential(multiplier=0.05, max=self.settings.retry_max_s),
                retry=retry_if_exception(lambda e: not is_row_error(e)),
                sleep=self._sleep_unless_stopping,
                stop=lambda _state: self._stopping.is_set(),
                reraise=True,
            ):
                with attempt:
                    try:
                        if batch.records:  # empty when every record in it was void
                            await self._write(batch.records)
                    except Exception as exc:
                        self._note_failure(exc)
                        raise
        except Exception:
            if not self._stopping.is_set():
                log.exception("recorder: unexpected shipper failure")
            return  # the spool keeps the batch for the next start
        finally:
            self._slots.release()
        self.database_ok, self.last_error = True, None
        self.metrics.records_shipped.inc(len(batch.records))
        batch.done = True
        self._advance_watermark()

    def _advance_watermark(self) -> None:
        in_flight = self._in_flight
        advanced = False
        while in_flight and in_flight[0].done:
            self._shipped_lsn = in_flight.popleft().last_lsn
            advanced = True
        if advanced and self.spool is not None:
            self.spool.commit(self._shipped_lsn)
        if advanced and not self._backlog():
            self.drained.set()

    async def _write(self, records: list[PredictionRecord]) -> None:
        """Write records; a batch holding a bad row is split until the bad row stands alone."""
        try:
            await self.writer.write(records)
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(records) == 1:
                log.error(
                    "recorder: dropped a row the database refuses",
                    extra={"id": str(records[0].id), "error": str(exc)[:200]},
                )
                self.metrics.records_quarantined.inc()
                return
            half = len(records) // 2
            await self._write(records[:half])
            await self._write(records[half:])

    def _note_failure(self, exc: BaseException) -> None:
        if self.database_ok is not False:
            log.warning("recorder: database write failed; spooling", extra={"error": repr(exc)})
        self.database_ok = False
        self.last_error = type(exc).__name__
        self.metrics.db_write_errors.inc()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
