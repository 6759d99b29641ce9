"""Render every error as ``{"error": {code, message, field, request_id}}``; never a trace."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from predictd.api.responses import JSONResponse, error_body
from predictd.errors import PredictdError
from predictd.observability import Metrics

log = logging.getLogger("predictd.api")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _body(request: Request, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    request_id = getattr(request.state, "request_id", None)
    return error_body(request.url.path, code, message, request_id, field)


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or None


def validation_problem(errors: Sequence[Any]) -> tuple[str, str, str | None]:
    """(code, message, field) of a 422 for Pydantic's errors: the first one, named."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return "invalid_json", "request body is not valid JSON", "body"
    field = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = f"unexpected field {field!r}"
    elif first.get("type") == "missing":
        message = f"field {field!r} is required"
    return "invalid_input", message, field


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(PredictdError)
    async def predictd_error(request: Request, exc: PredictdError) -> JSONResponse:
        if exc.status < 500:
            metrics.rejected_inputs.labels(exc.code).inc()
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse(
            _body(request, exc.code, exc.message, exc.field),
            status_code=exc.status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, field = validation_problem(exc.errors())
        metrics.rejected_inputs.labels(code).inc()
        return JSONResponse(_body(request, code, message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            _body(request, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(
            _body(request, "internal_error", "internal error; quote the request_id"),
            status_code=500,
        )
