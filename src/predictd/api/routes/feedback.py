"""Ground truth for recorded predictions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from predictd.api.auth import PredictScope, ReadScope
from predictd.api.deps import ServicesDep
from predictd.monitoring.feedback import FeedbackItem
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.feedback import (
    FeedbackAck,
    FeedbackBatchAck,
    FeedbackBatchRequest,
    FeedbackRequest,
    FeedbackSummary,
)

router = APIRouter(prefix="/feedback", tags=["feedback"])
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "the database is unreachable"}
}


@router.post("", responses=UNAVAILABLE)
async def submit(body: FeedbackRequest, services: ServicesDep, _: PredictScope) -> FeedbackAck:
    """The true answer for one prediction. Sending it again replaces it; a prediction the
    database does not hold yet is fine (``matched: false``): it counts once its row arrives."""
    outcome = await services.feedback.submit([FeedbackItem(body.prediction_id, body.actual)])
    return FeedbackAck(
        prediction_id=body.prediction_id,
        replaced=bool(outcome.replaced),
        matched=not outcome.unmatched,
    )


@router.post("/batch", responses=UNAVAILABLE)
async def submit_batch(
    body: FeedbackBatchRequest, services: ServicesDep, _: PredictScope
) -> FeedbackBatchAck:
    """Up to 1000 answers in one transaction; for the same id twice, the later one wins."""
    items = [FeedbackItem(i.prediction_id, i.actual) for i in body.items]
    outcome = await services.feedback.submit(items)
    return FeedbackBatchAck(
        received=outcome.received, replaced=len(outcome.replaced), unmatched=outcome.unmatched
    )


@router.get("/summary", responses=UNAVAILABLE)
async def summary(services: ServicesDep, _: ReadScope) -> FeedbackSummary:
    """How much feedback there is, and how much still waits for its prediction row."""
    return FeedbackSummary(**await services.feedback.summary())
