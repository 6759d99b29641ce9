"""The predict routes served without FastAPI's per-request machinery.

Routing, dependency solving, parameter extraction and response validation cost more than
everything else a prediction does once micro-batching has made the model cheap, so
ServingMiddleware hands POST /predict, /batch and /models/{name}/predict|batch (with the body
it has already read) to ``serve``. Access, parsing, inference and answers are the very code
the FastAPI routes in routes/predict.py run; errors are rendered as the exception handlers
render them.
"""

from __future__ import annotations

import logging

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from predictd.api.deps import Services, context_of
from predictd.api.errors import validation_problem
from predictd.api.responses import send_json_error
from predictd.api.routes.predict import ACCESS, Caller, Route, answer
from predictd.errors import PredictdError

log = logging.getLogger("predictd.api")


async def serve(
    scope: Scope, receive: Receive, send: Send, body: bytes, route: Route, request_id: str
) -> int:
    """Answer one predict request; returns the status sent."""
    services: Services = scope["app"].state.services
    request = Request(scope, receive)
    try:
        await ACCESS.admit(request, services)
        content = await answer(Caller(services, context_of(request)), body, route)
    except PredictdError as exc:
        if exc.status < 500:
            services.metrics.rejected_inputs.labels(exc.code).inc()
        await send_json_error(
            send, exc.status, exc.code, exc.message, request_id, exc.field, exc.retry_after_s
        )
        return exc.status
    except RequestValidationError as exc:
        code, message, field = validation_problem(exc.errors())
        services.metrics.rejected_inputs.labels(code).inc()
        await send_json_error(send, 422, code, message, request_id, field)
        return 422
    except Exception as exc:
        log.error("unhandled error", exc_info=exc)
        await send_json_error(
            send, 500, "internal_error", "internal error; quote the request_id", request_id
        )
        return 500
    payload = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
    return 200
