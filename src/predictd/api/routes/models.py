"""The registry over HTTP: read freely, change with the admin token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from predictd.api.auth import AdminScope, ReadScope
from predictd.api.deps import MAX_ID, AsciiDigits, ServicesDep
from predictd.errors import ModelNotFound
from predictd.registry.models import ModelVersion
from predictd.schemas.errors import ErrorResponse
from predictd.schemas.models import (
    ModelList,
    ModelSummary,
    ModelVersionPublic,
    ReloadResult,
    ServedVersion,
    VersionList,
)

router = APIRouter(prefix="/models", tags=["models"])
VersionPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a version number"), AsciiDigits]

_ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)
}


def _public(version: ModelVersion) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(version, from_attributes=True)


@router.get("")
async def list_models(services: ServicesDep, _: ReadScope) -> ModelList:
    """Every registered model name, with its production version."""
    summaries: dict[str, ModelSummary] = {}
    for v in await services.registry.list_versions():
        if v.name not in summaries:
            summaries[v.name] = ModelSummary(name=v.name, versions=0, production_version=None)
        summary = summaries[v.name]
        summary.versions += 1
        if v.stage == "production":
            summary.production_version = v.version
    return ModelList(models=list(summaries.values()))


@router.get("/{name}/versions", responses={404: {"model": ErrorResponse}})
async def list_model_versions(name: str, services: ServicesDep, _: ReadScope) -> VersionList:
    versions = await services.registry.list_versions(name)
    if not versions:
        raise ModelNotFound(f"no model named {name!r}")
    return VersionList(name=name, versions=[_public(v) for v in versions])


@router.get("/{name}/versions/{version}", responses={404: {"model": ErrorResponse}})
async def get_model_version(
    name: str, version: VersionPath, services: ServicesDep, _: ReadScope
) -> ModelVersionPublic:
    return _public(await services.registry.get(name, version))


@router.post("/{name}/versions/{version}/promote", responses=_ADMIN_ERRORS)
async def promote_model_version(
    name: str, version: VersionPath, services: ServicesDep, _admin: AdminScope
) -> ModelVersionPublic:
    """Make this version production (the previous one is archived); this replica swaps at
    once, the others within PREDICTD_REGISTRY_POLL_S."""
    promoted = await services.registry.promote(name, version)
    await services.loader.sync()
    return _public(promoted)


@router.post("/{name}/versions/{version}/stage", responses=_ADMIN_ERRORS)
async def stage_model_version(
    name: str, version: VersionPath, services: ServicesDep, _admin: AdminScope
) -> ModelVersionPublic:
    """Make this version the candidate for canary/shadow traffic (newest staging wins)."""
    staged = await services.registry.stage(name, version)
    await services.loader.sync()
    return _public(staged)


@router.post("/{name}/rollback", responses=_ADMIN_ERRORS)
async def rollback_model(
    name: str, services: ServicesDep, _admin: AdminScope
) -> ModelVersionPublic:
    """Promote the version that was production before the current one (409 if none)."""
    restored = await services.registry.rollback(name)
    await services.loader.sync()
    return _public(restored)


@router.post("/reload", responses=_ADMIN_ERRORS)
async def reload_models(services: ServicesDep, _admin: AdminScope) -> ReloadResult:
    """Read the registry now instead of at the next poll, retrying versions that failed to
    load before (e.g. after an artifact was restored)."""
    reloaded = await services.loader.sync(retry_failed=True)
    served = {
        name: ServedVersion(
            production=d.production.meta.version,
            candidate=d.candidate.meta.version if d.candidate else None,
        )
        for name, d in services.inference.deployments.items()
    }
    return ReloadResult(reloaded=reloaded, served=served, load_errors=services.loader.errors)
