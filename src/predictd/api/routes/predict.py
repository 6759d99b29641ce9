"""POST /predict and POST /batch."""

from __future__ import annotations

from fastapi import APIRouter

from predictd.api.deps import ContextDep, ServicesDep
from predictd.inference.service import ItemInput, PredictionResult
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.predict import BatchRequest, BatchResponse, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (413, 422, 500, 503, 504)
}


def _public(result: PredictionResult) -> PredictResponse:
    return PredictResponse.model_validate(result, from_attributes=True)


@router.post("/predict", responses=_ERRORS)
async def predict(body: PredictRequest, services: ServicesDep, ctx: ContextDep) -> PredictResponse:
    """Predict one item; the answer carries the id its record will have in the database."""
    result = await services.inference.predict(ItemInput(body.text, body.features), ctx)
    return _public(result)


@router.post("/batch", responses=_ERRORS)
async def predict_batch(
    body: BatchRequest, services: ServicesDep, ctx: ContextDep
) -> BatchResponse:
    """Predict up to PREDICTD_MAX_BATCH items in one vectorised model call."""
    items = [ItemInput(item.text, item.features) for item in body.items]
    result = await services.inference.predict_batch(items, ctx)
    predictions = [_public(r) for r in result.predictions]
    return BatchResponse(batch_id=result.batch_id, predictions=predictions, total=len(predictions))
