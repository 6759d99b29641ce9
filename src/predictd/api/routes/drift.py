"""Drift reports: what `predictd drift run` and the scheduled monitor measured."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from predictd.api.auth import Needs
from predictd.api.deps import MAX_ID, AsciiDigits, ServicesDep
from predictd.errors import NotFound
from predictd.schemas.drift import DriftReport, DriftReportList
from predictd.schemas.errors import ErrorResponse

router = APIRouter(prefix="/drift", tags=["drift"], dependencies=[Depends(Needs("read"))])
Model = Annotated[str | None, Query(max_length=200, description="only this model name")]
Version = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="only this version"), AsciiDigits
]


@router.get("/reports")
async def list_reports(
    services: ServicesDep,
    model: Model = None,
    version: Version = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DriftReportList:
    """Newest first: one report per version each time drift was measured."""
    rows = await services.drift.history(model, version, limit)
    return DriftReportList(items=[DriftReport(**row) for row in rows])


@router.get("/reports/latest", responses={404: {"model": ErrorResponse}})
async def latest_report(
    services: ServicesDep, model: Model = None, version: Version = None
) -> DriftReport:
    """The newest report (for the model and version given); 404 when drift was never
    measured for them."""
    rows = await services.drift.history(model, version, 1)
    if not rows:
        target = " ".join(x for x in (model, version and f"v{version}") if x) or "any model"
        raise NotFound(f"no drift report for {target}: run `predictd drift run`")
    return DriftReport(**rows[0])
