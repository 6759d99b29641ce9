"""Bodies of /feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

MAX_FEEDBACK_BATCH = 1000

# The true label (classifiers) or value (regressors); NaN and infinities are not values.
Actual = (
    Annotated[str, Field(min_length=1, max_length=1000)]
    | int
    | bool
    | Annotated[float, Field(allow_inf_nan=False)]
)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: UUID = Field(description="the prediction_id a /predict answer carried")
    actual: Actual = Field(examples=["positive"])


class FeedbackBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[FeedbackRequest] = Field(min_length=1, max_length=MAX_FEEDBACK_BATCH)


class FeedbackAck(BaseModel):
    prediction_id: UUID
    replaced: bool  # earlier feedback for this prediction was replaced
    matched: bool  # false: the prediction is not in the database yet; kept, counted on arrival


class FeedbackBatchAck(BaseModel):
    received: int
    replaced: int
    unmatched: list[UUID]  # not in the database yet: kept, counted once their rows arrive


class FeedbackSummary(BaseModel):
    total: int
    matched: int
    unmatched: int
    oldest_unmatched_at: datetime | None
