"""Shadow traffic: the candidate answers production's inputs, off the request path.

Requests only append to a bounded queue; one task drains it, lingering briefly after the first
arrival so that many requests share one vectorised call (per-call overhead, not per-item work,
is what a candidate called once per request would add to production's CPU). The call runs on
a thread of its own (in a worker process with ``PREDICTD_SHADOW_PROCESS=true``, see
``shadow_worker``), and the answers are recorded with ``variant=shadow`` and ``shadow_of``
pointing at the production answer. The queue is lossy on purpose: when the candidate cannot
keep up, shadow work is dropped and counted rather than slowing production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from uuid_utils.compat import uuid7

from predictd.errors import PredictdError
from predictd.inference import shadow_worker
from predictd.inference.runtime import ModelMeta, ModelRuntime
from predictd.inference.values import (
    InputPolicy,
    ItemInput,
    PredictionResult,
    Recorder,
    RequestContext,
    build_record,
)
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.settings import InferenceSettings, RecordingSettings

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
    def __init__(
        self,
        settings: InferenceSettings,
        recording: RecordingSettings,
        recorder: Recorder,
        metrics: Metrics,
    ) -> None:
        """``recording``: whether and how (PREDICTD_STORE_INPUTS) shadow answers are kept."""
        self.settings = settings
        self.recording = recording
        self.recorder = recorder
        self.metrics = metrics
        self.inputs = InputPolicy.from_settings(recording)
        self._jobs: deque[ShadowJob] = deque()
        self._pending = 0
        self._busy = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictd-shadow")
        self._pool: ProcessPoolExecutor | None = None

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
        self._thread.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

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

    def _worker(self) -> Executor:
        if not self.settings.shadow_process:
            return self._thread
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=shadow_worker.init,
                initargs=(self.settings,),
            )
        return self._pool

    def preload(self, candidate: ModelRuntime) -> None:
        """Start the worker and load ``candidate`` in it now rather than on the first shadowed
        request, so start-up work is not done while production waits on the CPU."""
        if not self.settings.shadow_process:
            return
        meta, path = candidate.meta, str(candidate.path)
        try:
            future = self._worker().submit(shadow_worker.run, meta, path, [], 0)
        except BrokenProcessPool:
            self._pool = None
            return
        future.add_done_callback(partial(_log_preload, candidate.meta))

    async def _shadow(self, jobs: list[ShadowJob]) -> None:
        candidate = jobs[0].candidate
        items = [(i.text, i.features) for job in jobs for i in job.items]
        answered = [(job, result) for job in jobs for result in job.results]
        max_chars = self.settings.max_text_chars
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if self.settings.shadow_process:
                call = partial(
                    shadow_worker.run, candidate.meta, str(candidate.path), items, max_chars
                )
            else:
                call = partial(shadow_worker.predict_with, candidate, items, max_chars)
            kept, values, outputs = await loop.run_in_executor(self._worker(), call)
        except Exception as exc:
            if isinstance(exc, BrokenProcessPool) and self._pool is not None:
                # The worker died (killed, out of memory): the next call starts a new one.
                broken, self._pool = self._pool, None
                broken.shutdown(wait=False, cancel_futures=True)
            log.warning(
                "shadow model raised",
                extra={"model": candidate.meta.name, "version": candidate.meta.version,
                       "error": repr(exc)},
            )  # fmt: skip
            self.metrics.shadow_dropped.inc(len(items))
            return
        if len(kept) < len(items):
            self.metrics.shadow_dropped.inc(len(items) - len(kept))
        if not values:
            return
        pairs = [answered[i] for i in kept]
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
                inputs=self.inputs,
            )
            for value, out, (job, result) in zip(values, outputs, pairs, strict=True)
        ]
        self.metrics.shadow_predictions.inc(len(records))
        if self.recording.enabled:
            try:
                await self.recorder.record(records)
            except PredictdError as exc:  # a full spool refuses shadow rows first
                self.metrics.shadow_dropped.inc(len(records))
                log.warning("shadow rows not recorded", extra={"error": exc.message})


def _log_preload(meta: ModelMeta, future: Future[shadow_worker.Outcome]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "shadow worker could not load the candidate",
            extra={"model": meta.name, "version": meta.version,
                   "error": repr(future.exception())},
        )  # fmt: skip
