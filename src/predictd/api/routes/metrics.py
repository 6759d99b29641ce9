"""Prometheus exposition of the metrics of this process, or of all workers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from predictd.access.keys import Principal
from predictd.api.auth import Needs
from predictd.api.deps import Services, ServicesDep


class MetricsNeeds(Needs):
    """The read scope, unless PREDICTD_METRICS_PUBLIC lets a credential-less scraper in."""

    async def admit(self, request: Request, services: Services) -> Principal:
        if services.settings.access.metrics_public:
            return Principal(None, frozenset({"read"}))
        return await super().admit(request, services)


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, dependencies=[Depends(MetricsNeeds("read"))])
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format (every worker's samples added up under --workers N)."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
