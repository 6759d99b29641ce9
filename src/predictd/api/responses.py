"""JSON answers rendered by orjson (UUIDs, datetimes and numpy-free floats natively), and the
shape of an error answer."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def is_v2(path: str) -> bool:
    """An Open Inference Protocol path: its errors take the protocol's shape."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(
    path: str, code: str, message: str, request_id: str | None, field: str | None = None
) -> dict[str, object]:
    """predictd's error shape, or for /v2 the protocol's ``{"error": message}`` (what V2
    clients read) with the same code, field and request id beside it."""
    if is_v2(path):
        return {"error": message, "code": code, "field": field, "request_id": request_id}
    return {"error": {"code": code, "message": message, "field": field, "request_id": request_id}}
