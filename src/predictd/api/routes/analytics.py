"""Read-only analytics over recorded predictions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from predictd.api.auth import Needs, ReadScope, check_scope
from predictd.api.deps import MAX_ID, AsciiDigits, ServicesDep
from predictd.errors import InvalidInput, ModelNotFound
from predictd.monitoring.system import history as system_history
from predictd.schemas.analytics import (
    Agreement,
    ArmStats,
    Comparison,
    ConfidenceBucket,
    Distribution,
    LabelCount,
    Latency,
    Performance,
    PerformanceRow,
    Recent,
    RecentPrediction,
    RecentPredictionWithInput,
    Summary,
    SystemHistory,
    SystemSample,
    TimePoint,
    Timeseries,
)
from predictd.schemas.errors import ErrorResponse
from predictd.vocabulary import Window

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[Depends(Needs("read"))])

From = Annotated[datetime | None, Query(alias="from", description="inclusive, ISO 8601")]
To = Annotated[datetime | None, Query(alias="to", description="exclusive, ISO 8601")]


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC, the zone everything is stored in."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def analytics_window(
    start: From = None,
    end: To = None,
    model: Annotated[
        str | None, Query(min_length=1, max_length=200, description="model name")
    ] = None,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="model version"), AsciiDigits
    ] = None,
) -> Window:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and end <= start:
        raise InvalidInput("'to' must be after 'from'", field="to")
    return Window(start, end, model, version)


WindowDep = Annotated[Window, Depends(analytics_window)]


@router.get("/summary")
async def summary(services: ServicesDep, window: WindowDep) -> Summary:
    """Counts, averages, cache hit rate and latency percentiles of the answered predictions
    in the window (per-minute rollups: windows have one-minute resolution)."""
    return Summary(**await services.analytics.summary(window))


@router.get("/distribution")
async def distribution(services: ServicesDep, window: WindowDep) -> Distribution:
    """How many predictions gave each label, and how confident they were, per decile
    (classifiers; regression values are not bucketed)."""
    rows = await services.analytics.distribution(window)
    labels = [LabelCount(label=label, count=count) for label, count in rows]
    bins = await services.analytics.confidence(window)
    confidence = [
        ConfidenceBucket(ge=i / len(bins), lt=(i + 1) / len(bins), count=n)
        for i, n in enumerate(bins)
    ]
    return Distribution(total=sum(c.count for c in labels), labels=labels, confidence=confidence)


@router.get("/latency")
async def latency(services: ServicesDep, window: WindowDep) -> Latency:
    """p50/p95/p99 and the latency histogram of the answered predictions."""
    return Latency(**await services.analytics.latency(window))


@router.get("/timeseries")
async def timeseries(
    services: ServicesDep,
    window: WindowDep,
    interval: Annotated[Literal["minute", "hour", "day"], Query()] = "hour",
) -> Timeseries:
    """Volume, errors, confidence and latency per minute, hour or day (UTC)."""
    points = await services.analytics.timeseries(window, interval)
    return Timeseries(interval=interval, points=[TimePoint(**p) for p in points])


def _cursor_of(row: dict[str, object]) -> str:
    raw = f"{row['ts'].isoformat()}|{row['id']}"  # type: ignore[attr-defined]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        return datetime.fromisoformat(ts), UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "cursor is not one this server gave out: pass next_cursor as it came", field="cursor"
        ) from exc


@router.get("/recent", responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
async def recent(
    principal: ReadScope,
    services: ServicesDep,
    window: WindowDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    include_input: Annotated[
        bool, Query(description="include stored inputs (admin token required)")
    ] = False,
) -> Recent:
    """The newest predictions first, a page at a time. Inputs are left out unless an admin
    asks for them."""
    if include_input:
        check_scope(principal, "admin")
    before = _parse_cursor(cursor) if cursor else None
    rows = await services.analytics.recent(window, limit, before, include_input)
    shape = RecentPredictionWithInput if include_input else RecentPrediction
    items = [shape(**row) for row in rows]
    next_cursor = _cursor_of(rows[-1]) if len(rows) == limit else None
    return Recent(items=items, count=len(items), next_cursor=next_cursor)


@router.get("/performance")
async def performance(
    services: ServicesDep,
    model: Annotated[
        str | None, Query(min_length=1, max_length=200, description="model name")
    ] = None,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="model version"), AsciiDigits
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Performance:
    """The newest performance rows the monitor stored (`predictd monitor run`, or the server
    itself with PREDICTD_MONITOR_INTERVAL_S)."""
    rows = await services.performance.history(model, version, limit)
    return Performance(items=[PerformanceRow(**row) for row in rows])


@router.get("/system")
async def system(
    services: ServicesDep,
    start: From = None,
    end: To = None,
    name: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="e.g. cpu_percent, event_loop_lag_ms"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> SystemHistory:
    """Samples of the servers' own health, newest first (PREDICTD_SYSTEM_METRICS_INTERVAL_S)."""
    rows = await system_history(services.db, name, _utc(start), _utc(end), limit)
    return SystemHistory(items=[SystemSample(**row) for row in rows])


@router.get("/compare", responses={404: {"model": ErrorResponse}})
async def compare(
    services: ServicesDep,
    model: Annotated[str, Query(min_length=1, max_length=200, description="model name")],
    start: From = None,
    end: To = None,
    candidate: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="version to compare (default: newest staging)"),
    ] = None,
) -> Comparison:
    """Production vs candidate for one model: counts, label distribution, confidence,
    latency, and the agreement rate on shadowed inputs."""
    start, end = _utc(start), _utc(end)
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
