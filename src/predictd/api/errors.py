"""Every error answer is rendered here, by ``error_response``, and counted here: FastAPI's
exception handlers, the serving middleware's refusals and the hot endpoints all call it, so
the shape (``{"error": {code, message, field, request_id}}``, V2's ``{"error": message}``),
the headers and the count cannot drift apart. No stack trace ever leaves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from predictd.api.responses import JSONResponse, error_body
from predictd.errors import (
    BadRequest,
    HttpError,
    InvalidInput,
    InvalidJson,
    MethodNotAllowed,
    NotFound,
    PredictdError,
)
from predictd.observability import Metrics

log = logging.getLogger("predictd.api")

INTERNAL = "internal error; quote the request_id"
_HTTP_ERRORS: dict[int, type[PredictdError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
}


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or None


def invalid_input(errors: Sequence[Any]) -> InvalidInput:
    """The 422 for Pydantic's errors: the first one, naming its field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return InvalidJson("request body is not valid JSON", field="body")
    field = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = f"unexpected field {field!r}"
    elif first.get("type") == "missing":
        message = f"field {field!r} is required"
    return InvalidInput(message, field=field)


def as_error(exc: BaseException) -> PredictdError:
    """The PredictdError an exception is answered as; an unexpected one is logged here and
    becomes a bare 500."""
    if isinstance(exc, PredictdError):
        return exc
    if isinstance(exc, RequestValidationError):
        return invalid_input(exc.errors())
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers) if exc.headers else None
        kind = _HTTP_ERRORS.get(exc.status_code)
        if kind is None:
            error: PredictdError = HttpError(exc.status_code, str(exc.detail), headers)
        else:
            error = kind(str(exc.detail), headers=headers)
        error.refusal = False  # the router's unknown paths and methods: scanners, not inputs
        return error
    log.error("unhandled error", exc_info=exc)
    return PredictdError(INTERNAL)


def error_response(
    exc: PredictdError, path: str, request_id: str | None, metrics: Metrics
) -> Response:
    """The one rendering of an error answer, and the one place refusals are counted."""
    if exc.refusal:
        metrics.rejected_inputs.labels(exc.code).inc()
    headers = dict(exc.headers or {})
    if exc.retry_after_s:
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(
        error_body(path, exc.code, exc.message, request_id, exc.field),
        status_code=exc.status,
        headers=headers or None,
    )


async def send_error(
    exc: PredictdError, scope: Scope, receive: Receive, send: Send, metrics: Metrics
) -> None:
    """``error_response`` sent straight over ASGI (the middleware and the dispatcher)."""
    request_id = scope.get("state", {}).get("request_id")
    await error_response(exc, scope["path"], request_id, metrics)(scope, receive, send)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", None)
        return error_response(as_error(exc), request.url.path, request_id, metrics)

    for kind in (PredictdError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
