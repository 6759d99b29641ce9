"""POST /predict and /batch (the default model), /models/{name}/predict and /batch.

The hot path: each endpoint is declared once, below, and api/endpoints.py makes of it both
the FastAPI route and the entry of the fast table the dispatcher answers from. Bodies are
parsed by Pydantic from the bytes, answers rendered by orjson.
"""

from __future__ import annotations

from typing import Any

from predictd.api.bodies import body_doc, parse_json
from predictd.api.endpoints import Call, Endpoint, declare
from predictd.inference.values import ItemInput, PredictionResult
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.predict import BatchRequest, BatchResponse, PredictRequest, PredictResponse

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (404, 413, 422, 500, 503, 504)
}
BODIES = (PredictRequest, BatchRequest)


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


async def _predict(call: Call, model: str | None) -> dict[str, Any]:
    one = parse_json(call.body, PredictRequest)
    item = ItemInput(one.text, one.features)
    return _public(await call.services.inference.predict(item, call.ctx, model=model, key=one.key))


async def _batch(call: Call, model: str | None) -> dict[str, Any]:
    many = parse_json(call.body, BatchRequest)
    items = [ItemInput(item.text, item.features) for item in many.items]
    inference = call.services.inference
    result = await inference.predict_batch(items, call.ctx, model=model, key=many.key)
    predictions = [_public(r) for r in result.predictions]
    return {"batch_id": result.batch_id, "predictions": predictions, "total": len(predictions)}


async def predict_default(call: Call) -> dict[str, Any]:
    return await _predict(call, None)


async def batch_default(call: Call) -> dict[str, Any]:
    return await _batch(call, None)


async def predict_named(call: Call) -> dict[str, Any]:
    return await _predict(call, call.params["name"])


async def batch_named(call: Call) -> dict[str, Any]:
    return await _batch(call, call.params["name"])


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

ENDPOINTS = declare(
    [
        Endpoint(
            "/predict", "predict", predict_default, name="predict", openapi=_PREDICT,
            doc="Predict one item with the default model; the answer carries the id its "
            "record will\nhave in the database.",  # as /openapi.json has always said it
        ),
        Endpoint(
            "/batch", "predict", batch_default, name="predict_batch", openapi=_BATCH,
            doc="Predict up to PREDICTD_MAX_BATCH items with the default model in one "
            "vectorised call.",
        ),
        Endpoint(
            "/models/{name}/predict", "predict", predict_named, name="predict_with",
            openapi=_PREDICT,
            doc="Predict one item with the named model (404 when this server does not serve "
            "it).",
        ),
        Endpoint(
            "/models/{name}/batch", "predict", batch_named, name="predict_batch_with",
            openapi=_BATCH, doc="Predict a batch with the named model.",
        ),
    ],
    tags=["predict"],
)  # fmt: skip
router = ENDPOINTS.router
