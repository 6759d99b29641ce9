"""Alerts raised by the monitor: list them (read scope), acknowledge and resolve them (operate)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from predictd.access.keys import Principal
from predictd.api.auth import OperateScope, ReadScope
from predictd.api.deps import MAX_ID, ServicesDep
from predictd.schemas.alerts import AcknowledgeRequest, Alert, AlertList, ResolveRequest
from predictd.schemas.errors import ErrorResponse

router = APIRouter(prefix="/alerts", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="the alert's id")]
GUARDED: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409)
}


@router.get("")
async def list_alerts(
    services: ServicesDep,
    _: ReadScope,
    status: Annotated[
        Literal["active", "acknowledged", "resolved", "open"] | None,
        Query(description="open = active or acknowledged"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AlertList:
    """Newest first. One open alert per rule and model: a persisting condition updates it."""
    return AlertList(items=[Alert(**a) for a in await services.alerts.list(status, limit)])


@router.post("/{alert_id}/acknowledge", responses=GUARDED)
async def acknowledge(
    alert_id: AlertId,
    who: OperateScope,
    services: ServicesDep,
    body: AcknowledgeRequest | None = None,
) -> Alert:
    """active -> acknowledged (409 otherwise). It still resolves itself when it clears."""
    by = _by(body or AcknowledgeRequest(), who)
    return Alert(**await services.alerts.acknowledge(alert_id, by))


@router.post("/{alert_id}/resolve", responses=GUARDED)
async def resolve(
    alert_id: AlertId, who: OperateScope, services: ServicesDep, body: ResolveRequest | None = None
) -> Alert:
    """active or acknowledged -> resolved, with notes (409 if already resolved)."""
    request = body or ResolveRequest()
    return Alert(**await services.alerts.resolve(alert_id, _by(request, who), request.notes))


def _by(request: AcknowledgeRequest, who: Principal) -> str:
    return request.by or who.name or "anonymous"
