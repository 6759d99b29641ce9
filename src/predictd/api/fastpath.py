"""The prediction routes served without FastAPI's per-request machinery.

Routing, dependency solving, parameter extraction and response validation cost more than
everything else a prediction does once micro-batching has made the model cheap (773 -> 1,834
req/s at 32 connections when this path was added). So ServingMiddleware hands POST /predict,
/batch, /models/{name}/predict|batch and V2 /v2/models/{name}[/versions/{v}]/infer, with the
body it has already read, to ``serve``. Access, parsing, inference and answers are the very
code the declared FastAPI routes run; errors are rendered as the exception handlers render
them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from predictd.api.concurrency import ConcurrencyGate
from predictd.api.deps import MAX_ID, Services, context_of, parse_version
from predictd.api.errors import validation_problem
from predictd.api.responses import send_json_error
from predictd.api.routes import v2
from predictd.api.routes.predict import ACCESS, Caller, answer
from predictd.errors import InvalidInput, Overloaded, PredictdError

log = logging.getLogger("predictd.api")

Kind = Literal["predict", "batch", "infer"]


@dataclass(frozen=True, slots=True)
class FastRoute:
    template: str  # the declared route's path, as metrics label it
    kind: Kind
    model: str | None = None
    version: str | None = None


_FIXED = {"/predict": FastRoute("/predict", "predict"), "/batch": FastRoute("/batch", "batch")}
_NAMED = re.compile(r"^/models/([^/]+)/(predict|batch)$")
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def route_of(path: str) -> FastRoute | None:
    """The prediction route ``path`` is, if it is one."""
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed
    if found := _NAMED.match(path):
        kind: Kind = "batch" if found[2] == "batch" else "predict"
        return FastRoute(f"/models/{{name}}/{found[2]}", kind, found[1])
    if found := _INFER.match(path):
        if found[2] is None:
            return FastRoute("/v2/models/{name}/infer", "infer", found[1])
        return FastRoute("/v2/models/{name}/versions/{version}/infer", "infer", *found.groups())
    return None


def _version(text: str) -> int:
    version = parse_version(text)
    if version is None:
        raise InvalidInput(
            f"a version is a number from 1 to {MAX_ID} (ASCII digits)", field="version"
        )
    return version


async def serve(
    scope: Scope,
    receive: Receive,
    send: Send,
    body: bytes,
    route: FastRoute,
    request_id: str,
    gate: ConcurrencyGate | None = None,
) -> int:
    """Answer one prediction request; returns the status sent. The concurrency slot of
    ``gate`` is taken once the caller is admitted, so refusals never wait for one."""
    services: Services = scope["app"].state.services
    request = Request(scope, receive)
    path = scope["path"]
    entered = False
    try:
        await ACCESS.admit(request, services)
        if gate is not None:
            entered = gate.enter()
            if not entered:
                raise Overloaded(gate.message)
        ctx = context_of(request)
        if route.kind == "infer":
            assert route.model is not None
            version = None if route.version is None else _version(route.version)
            response = await v2.infer_response(request, services, ctx, route.model, version)
            await response(scope, receive, _with_request_id(send, request_id))
            return response.status_code
        batch = route.kind == "batch"
        content = await answer(Caller(services, ctx), body, route.model, batch)
    except PredictdError as exc:
        if exc.status < 500 or isinstance(exc, Overloaded):
            services.metrics.rejected_inputs.labels(exc.code).inc()
        await send_json_error(
            send, exc.status, exc.code, exc.message, request_id, exc.field, exc.retry_after_s, path
        )
        return exc.status
    except RequestValidationError as exc:
        code, message, field = validation_problem(exc.errors())
        services.metrics.rejected_inputs.labels(code).inc()
        await send_json_error(send, 422, code, message, request_id, field, None, path)
        return 422
    except Exception as exc:
        log.error("unhandled error", exc_info=exc)
        await send_json_error(
            send, 500, "internal_error", "internal error; quote the request_id", request_id,
            None, None, path,
        )  # fmt: skip
        return 500
    finally:
        if entered and gate is not None:
            gate.leave()
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


def _with_request_id(send: Send, request_id: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode()),
            ]
        await send(message)

    return sending
