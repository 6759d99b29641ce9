"""POST /predict and /batch (the default model), /models/{name}/predict and /batch."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from predictd.api.auth import Needs
from predictd.api.deps import ContextDep, ServicesDep
from predictd.inference.records import ItemInput, PredictionResult, RequestContext
from predictd.inference.service import InferenceService
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.predict import BatchRequest, BatchResponse, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Depends(Needs("predict"))])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (404, 413, 422, 500, 503, 504)
}


def _public(result: PredictionResult) -> PredictResponse:
    return PredictResponse.model_validate(result, from_attributes=True)


async def _predict(
    inference: InferenceService, body: PredictRequest, ctx: RequestContext, model: str | None
) -> PredictResponse:
    item = ItemInput(body.text, body.features)
    return _public(await inference.predict(item, ctx, model=model, key=body.key))


async def _batch(
    inference: InferenceService, body: BatchRequest, ctx: RequestContext, model: str | None
) -> BatchResponse:
    items = [ItemInput(item.text, item.features) for item in body.items]
    result = await inference.predict_batch(items, ctx, model=model, key=body.key)
    predictions = [_public(r) for r in result.predictions]
    return BatchResponse(batch_id=result.batch_id, predictions=predictions, total=len(predictions))


@router.post("/predict", responses=_ERRORS)
async def predict(body: PredictRequest, services: ServicesDep, ctx: ContextDep) -> PredictResponse:
    """Predict one item with the default model; the answer carries the id its record will
    have in the database."""
    return await _predict(services.inference, body, ctx, None)


@router.post("/batch", responses=_ERRORS)
async def predict_batch(
    body: BatchRequest, services: ServicesDep, ctx: ContextDep
) -> BatchResponse:
    """Predict up to PREDICTD_MAX_BATCH items with the default model in one vectorised call."""
    return await _batch(services.inference, body, ctx, None)


@router.post("/models/{name}/predict", responses=_ERRORS)
async def predict_with(
    name: str, body: PredictRequest, services: ServicesDep, ctx: ContextDep
) -> PredictResponse:
    """Predict one item with the named model (404 when this server does not serve it)."""
    return await _predict(services.inference, body, ctx, name)


@router.post("/models/{name}/batch", responses=_ERRORS)
async def predict_batch_with(
    name: str, body: BatchRequest, services: ServicesDep, ctx: ContextDep
) -> BatchResponse:
    """Predict a batch with the named model."""
    return await _batch(services.inference, body, ctx, name)
