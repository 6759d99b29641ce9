"""Shadow traffic: the candidate answers production's inputs, off the request path.

Requests only append to a bounded queue; one task drains it, lingering briefly after the first
arrival so that many requests share one vectorised call (per-call overhead, not per-item work,
is what a candidate called once per request would add to production's CPU), run on a thread
of its own, and records the answers with ``variant=shadow`` and
``shadow_of`` pointing at the production answer. The queue is lossy on purpose: when the
candidate cannot keep up, shadow work is dropped and counted rather than slowing production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from uuid_utils.compat import uuid7

from predictd.errors import PredictdError
from predictd.inference.records import (
    ItemInput,
    PredictionResult,
    Recorder,
    RequestContext,
    build_record,
)
from predictd.inference.runtime import ModelInput, ModelRuntime, Prediction
from predictd.observability import Metrics
from predictd.recording.record import PredictionRecord
from predictd.settings import Settings

log = logging.getLogger("predictd.shadow")

MAX_CALL_ITEMS = 256


@dataclass(frozen=True, slots=True)
class ShadowJob:
    candidate: ModelRuntime
    items: Sequence[ItemInput]
    results: Sequence[PredictionResult]
    ctx: RequestContext
    batch_id: UUID | None


class ShadowRunner:
    def __init__(self, settings: Settings, recorder: Recorder, metrics: Metrics) -> None:
        self.settings = settings
        self.recorder = recorder
        self.metrics = metrics
        self._jobs: deque[ShadowJob] = deque()
        self._pending = 0
        self._busy = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictd-shadow")

    @property
    def idle(self) -> bool:
        return not self._jobs and not self._busy

    def submit(self, job: ShadowJob) -> None:
        count = len(job.items)
        if self._pending + count > self.settings.shadow_queue_max:
            self.metrics.shadow_dropped.inc(count)
            return
        self._jobs.append(job)
        self._pending += count
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="predictd-shadow")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            linger = self.settings.shadow_linger_ms / 1000
            if linger > 0 and self._pending < MAX_CALL_ITEMS:
                await asyncio.sleep(linger)
            self._wake.clear()
            while self._jobs:
                self._busy = True
                try:
                    await self._shadow(self._take())
                except Exception:
                    log.exception("shadow prediction failed")
                finally:
                    self._busy = False

    def _take(self) -> list[ShadowJob]:
        """Queued jobs for one candidate, up to one call's worth of items."""
        first = self._jobs.popleft()
        jobs, count = [first], len(first.items)
        while self._jobs and self._jobs[0].candidate is first.candidate:
            if count + len(self._jobs[0].items) > MAX_CALL_ITEMS:
                break
            job = self._jobs.popleft()
            jobs.append(job)
            count += len(job.items)
        self._pending -= count
        return jobs

    def _predict(
        self, candidate: ModelRuntime, jobs: list[ShadowJob]
    ) -> tuple[list[ModelInput], list[tuple[ShadowJob, PredictionResult]], list[Prediction]]:
        """Validation and prediction together, on the shadow thread, off the event loop."""
        values: list[ModelInput] = []
        pairs: list[tuple[ShadowJob, PredictionResult]] = []
        for job in jobs:
            for item, result in zip(job.items, job.results, strict=True):
                try:
                    values.append(
                        candidate.validate(
                            item.text, item.features, max_chars=self.settings.max_text_chars
                        )
                    )
                except PredictdError:  # the candidate's schema differs: nothing to compare
                    self.metrics.shadow_dropped.inc()
                    continue
                pairs.append((job, result))
        return values, pairs, candidate.predict(values) if values else []

    async def _shadow(self, jobs: list[ShadowJob]) -> None:
        candidate = jobs[0].candidate
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            values, pairs, outputs = await loop.run_in_executor(
                self._executor, self._predict, candidate, jobs
            )
        except Exception as exc:
            log.warning(
                "shadow model raised",
                extra={"model": candidate.meta.name, "version": candidate.meta.version,
                       "error": repr(exc)},
            )  # fmt: skip
            self.metrics.shadow_dropped.inc(sum(len(job.items) for job in jobs))
            return
        if not values:
            return
        latency_ms = (time.perf_counter() - started) * 1000 / len(values)
        now = datetime.now(UTC)
        records: list[PredictionRecord] = [
            build_record(
                candidate.meta,
                value,
                out,
                uuid7(),
                now,
                job.ctx,
                batch_id=job.batch_id,
                latency_ms=latency_ms,
                variant="shadow",
                shadow_of=result.prediction_id,
            )
            for value, out, (job, result) in zip(values, outputs, pairs, strict=True)
        ]
        self.metrics.shadow_predictions.inc(len(records))
        if self.settings.record:
            try:
                await self.recorder.record(records)
            except PredictdError as exc:  # a full spool refuses shadow rows first
                self.metrics.shadow_dropped.inc(len(records))
                log.warning("shadow rows not recorded", extra={"error": exc.message})
