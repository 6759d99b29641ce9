"""POST /predict and /batch (the default model), /models/{name}/predict and /batch.

The hot path. ServingMiddleware sends these requests straight to ``answer`` (api/fastpath.py),
without FastAPI's routing, dependency solving and response validation; the routes below
declare them for /openapi.json and the scope check, and answer the same way when a request
reaches them. Bodies are parsed by Pydantic from the bytes, answers rendered by orjson.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from predictd.api.auth import Needs
from predictd.api.bodies import body_doc, parse_json
from predictd.api.deps import Services, context_of
from predictd.api.responses import JSONResponse
from predictd.inference.values import ItemInput, PredictionResult, RequestContext
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.predict import BatchRequest, BatchResponse, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (404, 413, 422, 500, 503, 504)
}
BODIES = (PredictRequest, BatchRequest)


@dataclass(frozen=True, slots=True)
class Caller:
    services: Services
    ctx: RequestContext


class PredictAccess(Needs):
    """The predict scope, the services and the request context in one dependency."""

    def __init__(self) -> None:
        super().__init__("predict")

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        services: Services = request.app.state.services
        await self.admit(request, services)
        return Caller(services, context_of(request))


ACCESS = PredictAccess()
CallerDep = Annotated[Caller, Depends(ACCESS)]


def _public(r: PredictionResult) -> dict[str, Any]:
    return {
        "prediction_id": r.prediction_id,
        "prediction": r.prediction,
        "confidence": r.confidence,
        "probabilities": r.probabilities,
        "model_name": r.model_name,
        "model_version": r.model_version,
        "variant": r.variant,
        "latency_ms": r.latency_ms,
        "cache_hit": r.cache_hit,
    }


async def answer(caller: Caller, body: bytes, model: str | None, batch: bool) -> dict[str, Any]:
    """The answer to one predict or batch request (raises PredictdError or a 422)."""
    inference = caller.services.inference
    if not batch:
        one = parse_json(body, PredictRequest)
        item = ItemInput(one.text, one.features)
        return _public(await inference.predict(item, caller.ctx, model=model, key=one.key))
    many = parse_json(body, BatchRequest)
    items = [ItemInput(item.text, item.features) for item in many.items]
    result = await inference.predict_batch(items, caller.ctx, model=model, key=many.key)
    predictions = [_public(r) for r in result.predictions]
    return {"batch_id": result.batch_id, "predictions": predictions, "total": len(predictions)}


async def _respond(
    request: Request, caller: Caller, model: str | None, batch: bool
) -> JSONResponse:
    return JSONResponse(await answer(caller, await request.body(), model, batch))


_PREDICT: dict[str, Any] = {
    "responses": _ERRORS,
    "response_model": PredictResponse,
    "openapi_extra": body_doc(PredictRequest),
}
_BATCH: dict[str, Any] = {
    "responses": _ERRORS,
    "response_model": BatchResponse,
    "openapi_extra": body_doc(BatchRequest),
}


@router.post("/predict", **_PREDICT)
async def predict(request: Request, caller: CallerDep) -> JSONResponse:
    """Predict one item with the default model; the answer carries the id its record will
    have in the database."""
    return await _respond(request, caller, None, batch=False)


@router.post("/batch", **_BATCH)
async def predict_batch(request: Request, caller: CallerDep) -> JSONResponse:
    """Predict up to PREDICTD_MAX_BATCH items with the default model in one vectorised call."""
    return await _respond(request, caller, None, batch=True)


@router.post("/models/{name}/predict", **_PREDICT)
async def predict_with(name: str, request: Request, caller: CallerDep) -> JSONResponse:
    """Predict one item with the named model (404 when this server does not serve it)."""
    return await _respond(request, caller, name, batch=False)


@router.post("/models/{name}/batch", **_BATCH)
async def predict_batch_with(name: str, request: Request, caller: CallerDep) -> JSONResponse:
    """Predict a batch with the named model."""
    return await _respond(request, caller, name, batch=True)
