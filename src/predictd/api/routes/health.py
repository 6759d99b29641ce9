"""Liveness, readiness and what is being served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from predictd.api.auth import ReadScope
from predictd.api.deps import ServicesDep
from predictd.api.responses import JSONResponse
from predictd.errors import ModelNotFound, ModelNotReady
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.health import CandidateInfo, Check, Liveness, ModelInfo, Readiness

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


_STAGE_BY_SOURCE = {"registry": "production", "manifest": "production"}


@router.get("/model-info", responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
async def model_info(
    services: ServicesDep,
    _: ReadScope,
    model: Annotated[
        str | None, Query(description="a served model name (default: the default)")
    ] = None,
) -> ModelInfo:
    """What this replica serves for one model: version, stage, artifact, candidate, and the
    last load error if a newer version failed to load."""
    inference = services.inference
    name = model or inference.default_name
    if name is None:
        raise ModelNotReady(services.loader.last_error or "no model is loaded yet")
    deployment = inference.deployments.get(name)
    if deployment is None:
        error = services.loader.errors.get(name)
        if error:
            raise ModelNotReady(error)
        raise ModelNotFound(f"model {name!r} is not served here")
    meta = deployment.production.meta
    candidate = deployment.candidate
    settings = services.settings
    return ModelInfo(
        name=meta.name,
        version=meta.version,
        stage=_STAGE_BY_SOURCE.get(meta.source, "none"),
        flavor=meta.flavor,
        algorithm=meta.algorithm,
        task=meta.task,
        input_kind=meta.input_kind,
        feature_names=list(meta.feature_names),
        classes=list(meta.classes),
        artifact_sha256=meta.sha256,
        loaded_at=meta.loaded_at,
        source=meta.source,
        candidate=None
        if candidate is None
        else CandidateInfo(
            version=candidate.meta.version,
            artifact_sha256=candidate.meta.sha256,
            loaded_at=candidate.meta.loaded_at,
            canary_percent=settings.canary_percent,
            shadow=settings.shadow,
        ),
        last_load_error=services.loader.errors.get(name),
        default=name == inference.default_name,
        served_models=sorted(inference.deployments),
    )
