"""Liveness, readiness and what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from predictd.api.deps import ServicesDep
from predictd.api.responses import JSONResponse
from predictd.errors import ModelNotReady
from predictd.schemas.health import Check, Liveness, ModelInfo, Readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Liveness:
    """Liveness: the process answers. Touches nothing external."""
    return Liveness()


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(services: ServicesDep) -> JSONResponse:
    """200 when a model is loaded and records can be kept (database or spool)."""
    ok, checks = await services.readiness.checks()
    body = Readiness(
        status="ready" if ok else "not_ready",
        checks={name: Check(state=c.state, detail=c.detail) for name, c in checks.items()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/model-info")
async def model_info(services: ServicesDep) -> ModelInfo:
    """The model version this replica serves."""
    runtime = services.inference.runtime
    if runtime is None:
        raise ModelNotReady("no model is loaded yet")
    meta = runtime.meta
    return ModelInfo(
        name=meta.name,
        version=meta.version,
        flavor=meta.flavor,
        algorithm=meta.algorithm,
        task=meta.task,
        input_kind=meta.input_kind,
        feature_names=list(meta.feature_names),
        classes=list(meta.classes),
        artifact_sha256=meta.sha256,
        loaded_at=meta.loaded_at,
        source=meta.source,
        last_load_error=services.loader.last_error,
    )
