"""GET /dashboard: the one-page dashboard and its two static files."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from predictd.dashboard import MEDIA_TYPES, SECURITY_HEADERS, asset
from predictd.errors import NotFound

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


def _serve(name: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return Response(asset(name), media_type=MEDIA_TYPES[name], headers=headers)


@router.get("")
async def dashboard() -> Response:
    """Volume, latency, labels, confidence, accuracy, drift and alerts of one model, drawn
    from the JSON API by a few hundred lines of plain JavaScript."""
    return _serve("index.html")


@router.get("/{name}")
async def dashboard_file(name: str) -> Response:
    if name not in ("dashboard.js", "dashboard.css"):
        raise NotFound(f"no dashboard file {name!r}")
    return _serve(name)
