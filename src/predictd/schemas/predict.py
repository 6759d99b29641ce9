"""Request and response bodies of /predict and /batch."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Label = str | int | float | bool


Key = Annotated[
    str | None,
    Field(
        default=None,
        max_length=256,
        description="Sticky routing key (e.g. a user id): with a canary running, requests with "
        "the same key always reach the same version.",
    ),
]


class PredictItem(BaseModel):
    """Exactly one of ``text`` (text models) or ``features`` (tabular models). Which one is
    checked against the model that answers (`ModelRuntime.validate`), so a 422 can name the
    field that model takes; the schema alone cannot know it."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, examples=["I love this product"])
    # Any here so the model's own schema check names the offending feature (numbers only).
    features: (
        Annotated[
            dict[str, Any],
            Field(
                max_length=10_000,
                json_schema_extra={"additionalProperties": {"type": "number"}},
                examples=[{"mean_radius": 14.1}],
            ),
        ]
        | None
    ) = None


class PredictRequest(PredictItem):
    key: Key = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[PredictItem] = Field(min_length=1)
    key: Key = None


class PredictResponse(BaseModel):
    prediction_id: UUID
    prediction: Label
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    model_name: str
    model_version: int
    variant: Literal["production", "canary"] = Field(
        description="`canary` when the candidate version answered"
    )
    latency_ms: float
    cache_hit: bool = False


class BatchResponse(BaseModel):
    batch_id: UUID
    predictions: list[PredictResponse]
    total: int
