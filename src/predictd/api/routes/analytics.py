"""Read-only analytics over recorded predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from predictd.api.deps import ServicesDep
from predictd.errors import ModelNotFound
from predictd.schemas.analytics import (
    Agreement,
    ArmStats,
    Comparison,
    Distribution,
    LabelCount,
    Recent,
    RecentPrediction,
    Summary,
)
from predictd.schemas.errors import ErrorResponse

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


@router.get("/compare", responses={404: {"model": ErrorResponse}})
async def compare(
    services: ServicesDep,
    model: Annotated[str, Query(min_length=1, max_length=200, description="model name")],
    start: From = None,
    end: To = None,
    candidate: Annotated[
        int | None, Query(ge=1, description="version to compare (default: newest staging)")
    ] = None,
) -> Comparison:
    """Production vs candidate for one model: counts, label distribution, confidence,
    latency, and the agreement rate on shadowed inputs."""
    production, staged = None, None
    for v in await services.registry.serving_versions([model]):
        if v.stage == "production":
            production = v.version
        else:
            staged = v.version
    if production is None:
        raise ModelNotFound(f"model {model!r} has no production version")
    analytics = services.analytics
    candidate = candidate or staged
    arms = {"production": await analytics.arm(model, production, start, end)}
    agreement = None
    if candidate is not None and candidate != production:
        arms["candidate"] = await analytics.arm(model, candidate, start, end)
        shadowed, agreed = await analytics.agreement(model, candidate, start, end)
        agreement = Agreement(
            shadowed=shadowed, agreed=agreed, rate=agreed / shadowed if shadowed else None
        )
    stats = {
        role: ArmStats(
            **{**arm, "labels": [LabelCount(label=k, count=c) for k, c in arm["labels"]]}
        )
        for role, arm in arms.items()
    }
    return Comparison(
        model=model,
        production=stats["production"],
        candidate=stats.get("candidate"),
        agreement=agreement,
    )
