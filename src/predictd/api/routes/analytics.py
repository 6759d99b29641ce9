"""Read-only analytics over recorded predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from predictd.api.deps import ServicesDep
from predictd.schemas.analytics import (
    Distribution,
    LabelCount,
    Recent,
    RecentPrediction,
    Summary,
)

router = APIRouter(prefix="/analytics", tags=["analytics"])

From = Annotated[datetime | None, Query(alias="from", description="inclusive, ISO 8601")]
To = Annotated[datetime | None, Query(alias="to", description="exclusive, ISO 8601")]


@router.get("/summary")
async def summary(services: ServicesDep, start: From = None, end: To = None) -> Summary:
    """Totals, averages and p95 latency of successful predictions in the window."""
    return Summary(**await services.analytics.summary(start, end))


@router.get("/distribution")
async def distribution(services: ServicesDep, start: From = None, end: To = None) -> Distribution:
    """How many predictions gave each label."""
    rows = await services.analytics.distribution(start, end)
    labels = [LabelCount(label=label, count=count) for label, count in rows]
    return Distribution(total=sum(c.count for c in labels), labels=labels)


@router.get("/recent")
async def recent(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Recent:
    """The newest predictions first; inputs are never included."""
    rows = await services.analytics.recent(limit)
    items = [RecentPrediction(**row) for row in rows]
    return Recent(items=items, count=len(items))
