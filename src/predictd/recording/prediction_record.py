"""PredictionRecord: one row of the predictions table, as it travels through the spool."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from predictd.vocabulary import PREDICTION_COLUMNS


@dataclass(slots=True)
class PredictionRecord:
    id: uuid.UUID
    ts: datetime
    model_name: str
    model_version: int
    variant: str
    request_id: str | None
    batch_id: uuid.UUID | None
    input: Any
    output: Any
    confidence: float | None
    probabilities: dict[str, float] | None
    latency_ms: float
    cache_hit: bool
    status: str
    error: str | None
    client_ip: str | None
    user_agent: str | None
    shadow_of: uuid.UUID | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PREDICTION_COLUMNS}

    @classmethod
    def from_bytes(cls, payload: bytes) -> PredictionRecord:
        """Decode a spooled record (the inverse of ``to_bytes``)."""
        data = orjson.loads(payload)
        data["id"] = uuid.UUID(data["id"])
        ts = datetime.fromisoformat(data["ts"])
        data["ts"] = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        for key in ("batch_id", "shadow_of"):
            if data.get(key):  # absent from records spooled before the column existed
                data[key] = uuid.UUID(data[key])
        return cls(**{name: data.get(name) for name in PREDICTION_COLUMNS})
