"""InferenceService: the one predict path that HTTP, the CLI, benchmarks and tests all call.

It validates against the loaded model's schema, runs the model in a bounded worker pool off
the event loop, builds a PredictionRecord per answer and hands it to the recorder before the
caller gets the result — what "before" means is the recorder's durability setting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from uuid_utils.compat import uuid7

from predictd.errors import InvalidInput, ModelFailure, ModelNotReady, PredictionTimeout
from predictd.inference.runtime import Label, ModelInput, ModelRuntime, Prediction
from predictd.observability import Metrics
from predictd.recording.record import PredictionRecord
from predictd.settings import Settings

log = logging.getLogger("predictd.inference")


class Recorder(Protocol):
    async def record(self, records: Sequence[PredictionRecord]) -> bool: ...


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class ItemInput:
    text: str | None = None
    features: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class PredictionResult:
    prediction_id: UUID
    prediction: Label
    confidence: float | None
    probabilities: dict[str, float] | None
    model_name: str
    model_version: int
    latency_ms: float
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch_id: UUID
    predictions: list[PredictionResult]


class InferenceService:
    def __init__(self, settings: Settings, recorder: Recorder, metrics: Metrics) -> None:
        self.settings = settings
        self.recorder = recorder
        self.metrics = metrics
        self.runtime: ModelRuntime | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=settings.inference_threads, thread_name_prefix="predictd-model"
        )

    def set_runtime(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime  # a single reference swap: in-flight calls keep their runtime

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ready_runtime(self) -> ModelRuntime:
        runtime = self.runtime
        if runtime is None or not runtime.ready:
            raise ModelNotReady("no model is loaded yet", retry_after_s=5)
        return runtime

    async def predict(self, item: ItemInput, ctx: RequestContext) -> PredictionResult:
        runtime = self._ready_runtime()
        value = runtime.validate(item.text, item.features, max_chars=self.settings.max_text_chars)
        results = await self._run(runtime, [value], ctx, batch_id=None)
        return results[0]

    async def predict_batch(self, items: Sequence[ItemInput], ctx: RequestContext) -> BatchResult:
        runtime = self._ready_runtime()
        if not items:
            raise InvalidInput("items must not be empty", field="items")
        if len(items) > self.settings.max_batch:
            raise InvalidInput(f"at most {self.settings.max_batch} items per batch", field="items")
        values = [
            runtime.validate(
                it.text,
                it.features,
                max_chars=self.settings.max_text_chars,
                prefix=f"items[{i}].",
            )
            for i, it in enumerate(items)
        ]
        batch_id = uuid7()
        return BatchResult(batch_id, await self._run(runtime, values, ctx, batch_id=batch_id))

    async def _run(
        self,
        runtime: ModelRuntime,
        values: list[ModelInput],
        ctx: RequestContext,
        batch_id: UUID | None,
    ) -> list[PredictionResult]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            outputs = await asyncio.wait_for(
                loop.run_in_executor(self._executor, runtime.predict, values),
                timeout=self.settings.predict_timeout_s,
            )
        except TimeoutError as exc:
            raise PredictionTimeout(
                f"the model took longer than {self.settings.predict_timeout_s}s"
            ) from exc
        except Exception as exc:
            log.exception("model raised during predict", extra={"model": runtime.meta.name})
            latency = (time.perf_counter() - started) * 1000
            await self._record_failure(runtime, values, ctx, batch_id, latency, exc)
            raise ModelFailure("the model failed on this input") from exc
        latency_ms = (time.perf_counter() - started) * 1000 / len(values)
        meta = runtime.meta
        now = datetime.now(UTC)
        results: list[PredictionResult] = []
        records: list[PredictionRecord] = []
        for value, out in zip(values, outputs, strict=True):
            pid = uuid7()
            results.append(
                PredictionResult(
                    pid,
                    out.label,
                    out.confidence,
                    out.probabilities,
                    meta.name,
                    meta.version,
                    round(latency_ms, 3),
                )
            )
            records.append(self._record(runtime, value, out, pid, now, ctx, batch_id, latency_ms))
        if self.settings.record:
            await self.recorder.record(records)
        label_metric = self.metrics.predictions
        is_classifier = meta.task == "classification"
        for out in outputs:
            label_metric.labels(
                meta.name, str(meta.version), str(out.label) if is_classifier else ""
            ).inc()
        return results

    @staticmethod
    def _input_json(value: ModelInput) -> dict[str, Any]:
        return {"text": value} if isinstance(value, str) else {"features": dict(value)}

    def _record(
        self,
        runtime: ModelRuntime,
        value: ModelInput,
        out: Prediction | None,
        pid: UUID,
        now: datetime,
        ctx: RequestContext,
        batch_id: UUID | None,
        latency_ms: float,
        error: str | None = None,
    ) -> PredictionRecord:
        return PredictionRecord(
            id=pid,
            ts=now,
            model_name=runtime.meta.name,
            model_version=runtime.meta.version,
            variant="production",
            request_id=ctx.request_id,
            batch_id=batch_id,
            input=self._input_json(value),
            output=None if out is None else out.label,
            confidence=None if out is None else out.confidence,
            probabilities=None if out is None else out.probabilities,
            latency_ms=latency_ms,
            cache_hit=False,
            status="ok" if error is None else "error",
            error=error,
            client_ip=ctx.client_ip,
            user_agent=ctx.user_agent[:512] if ctx.user_agent else None,
        )

    async def _record_failure(
        self,
        runtime: ModelRuntime,
        values: list[ModelInput],
        ctx: RequestContext,
        batch_id: UUID | None,
        latency_ms: float,
        exc: Exception,
    ) -> None:
        """Failed calls are recorded too (status=error), best effort: never mask the 500."""
        if not self.settings.record:
            return
        now = datetime.now(UTC)
        error = type(exc).__name__
        records = [
            self._record(runtime, v, None, uuid7(), now, ctx, batch_id, latency_ms, error)
            for v in values
        ]
        try:
            await self.recorder.record(records)
        except Exception:
            log.warning("could not record a failed prediction", extra={"error": error})
