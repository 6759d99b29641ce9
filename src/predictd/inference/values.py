"""The predict path's plain values: what a request brings in (ItemInput, RequestContext), what
it gets back (PredictionResult), and the PredictionRecord each answer leaves behind
(build_record, keeping of the input what the InputPolicy allows)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

import orjson

from predictd.inference.routing import Variant
from predictd.inference.runtime import Label, ModelInput, ModelMeta, Prediction
from predictd.recording.prediction_record import PredictionRecord
from predictd.settings import RecordingSettings


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
    variant: Variant = "production"
    cache_hit: bool = False


def _input_json(value: ModelInput) -> dict[str, Any]:
    return {"text": value} if isinstance(value, str) else {"features": dict(value)}


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """What a record keeps of its input (PREDICTD_STORE_INPUTS): all of it, a keyed hash
    (equal inputs still join and deduplicate; without the key nobody can test a guess), or
    nothing."""

    mode: Literal["full", "hash", "none"] = "full"
    key: bytes = b""

    @classmethod
    def from_settings(cls, settings: RecordingSettings) -> InputPolicy:
        key = (
            settings.input_hash_key.get_secret_value().encode() if settings.input_hash_key else b""
        )
        return cls(settings.store_inputs, key)

    def stored(self, value: ModelInput) -> dict[str, Any] | None:
        if self.mode == "none":
            return None
        data = _input_json(value)
        if self.mode == "full":
            return data
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        return {"hmac_sha256": hmac.new(self.key, canonical, hashlib.sha256).hexdigest()}


FULL_INPUTS = InputPolicy()


def build_record(
    meta: ModelMeta,
    value: ModelInput,
    out: Prediction | None,
    pid: UUID,
    now: datetime,
    ctx: RequestContext,
    *,
    batch_id: UUID | None,
    latency_ms: float,
    variant: Variant,
    error: str | None = None,
    shadow_of: UUID | None = None,
    inputs: InputPolicy = FULL_INPUTS,
    cache_hit: bool = False,
) -> PredictionRecord:
    return PredictionRecord(
        id=pid,
        ts=now,
        model_name=meta.name,
        model_version=meta.version,
        variant=variant,
        request_id=ctx.request_id,
        batch_id=batch_id,
        input=inputs.stored(value),
        output=None if out is None else out.label,
        confidence=None if out is None else out.confidence,
        probabilities=None if out is None else out.probabilities,
        latency_ms=latency_ms,
        cache_hit=cache_hit,
        status="ok" if error is None else "error",
        error=error,
        client_ip=ctx.client_ip,
        user_agent=ctx.user_agent[:512] if ctx.user_agent else None,
        shadow_of=shadow_of,
    )
