"""Liveness, readiness and what is being served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from predictd.api.auth import Needs, ReadScope
from predictd.api.deps import Services, ServicesDep
from predictd.api.responses import JSONResponse
from predictd.errors import ModelNotFound, ModelNotReady, PredictdError
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.health import CandidateInfo, Check, Liveness, ModelInfo, Readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Liveness:
    """Liveness: the process answers. Touches nothing external."""
    return Liveness()


_READ = Needs("read")
PUBLIC_DETAILS = frozenset({"server"})  # starting | serving | draining: says nothing of the setup


async def _may_read(request: Request, services: Services) -> bool:
    """Whether the caller may see the checks' details (database user, host and name, spool
    path, load errors): a key with the read scope, or anyone where read is open (auth off,
    which serves loopback only). A probe sends no key and is never refused or audited."""
    if request.headers.get("authorization") is None and services.settings.access.auth == "on":
        return False
    try:
        await _READ.admit(request, services)
    except PredictdError:
        return False
    return True


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """200 when a model is loaded and records can be kept (database or spool). Without the
    read scope the body has each check's state only (and the server's phase)."""
    ok, checks = await services.readiness.checks()
    detailed = await _may_read(request, services)
    body = Readiness(
        status="ready" if ok else "not_ready",
        checks={
            name: Check(
                state=c.state, detail=c.detail if detailed or name in PUBLIC_DETAILS else None
            )
            for name, c in checks.items()
        },
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
    settings = services.settings.inference
    details = deployment.production.details()
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
        execution_providers=list(details.execution_providers),
        max_input_tokens=details.max_input_tokens,
    )
