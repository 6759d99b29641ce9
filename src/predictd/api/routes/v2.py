"""The Open Inference Protocol (KServe V2, REST), so Triton and KServe clients work unchanged.

Inference goes through the same InferenceService as /predict (micro-batching, canary, cache,
recording); only the wire format differs. Errors take the protocol's ``{"error": message}``
shape. Health and server metadata are open like /health; model metadata and the repository
index need `read`, inference `predict`, load and unload `admin`.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Path
from fastapi.responses import Response

from predictd import __version__
from predictd.api.auth import AdminScope, ReadScope
from predictd.api.bodies import body_doc
from predictd.api.deps import MAX_ID, AsciiDigits, Services, ServicesDep
from predictd.api.encoding import encode_body, preferred_encoding
from predictd.api.endpoints import Call, Endpoint, declare
from predictd.api.responses import JSONResponse
from predictd.api.tensors import (
    decode_inputs,
    encode_outputs,
    metadata_tensors,
    parse_request,
    split_body,
    to_items,
    wanted_outputs,
)
from predictd.errors import InvalidInput, ModelNotFound, StorageUnavailable
from predictd.inference.routing import Deployment, served_versions
from predictd.inference.runtime import ModelRuntime
from predictd.inference.values import PredictionResult
from predictd.schemas.v2 import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2Error,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

EXTENSIONS = ["binary_tensor_data", "model_repository"]
HEADER_LENGTH = "Inference-Header-Content-Length"
VersionPath = Annotated[
    int, Path(ge=1, le=MAX_ID, description="a served version number"), AsciiDigits
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": V2Error} for code in codes}


_READ_ERRORS = _errors(401, 403, 404, 422, 503)
_INFER_ERRORS = _errors(401, 403, 404, 413, 415, 422, 429, 500, 503, 504)
_INFER_DOC = body_doc(
    InferRequest,
    "The inference request as JSON, or with the binary tensor extension its JSON header "
    f"({HEADER_LENGTH} bytes) followed by the binary tensor data. gzip and deflate "
    "Content-Encoding are accepted.",
    **{"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
)
_INFER_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferResponse,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "JSON, or with binary outputs the JSON header followed by their bytes",
    }
}


@router.get("/health/live")
async def server_live() -> ServerLive:
    """Liveness, as /health."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses={400: {"model": ServerReady}})
async def server_ready(services: ServicesDep) -> JSONResponse:
    """Readiness, as /ready; the protocol answers 'not ready' with a 4xx (400)."""
    ok, _checks = await services.readiness.checks()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 400)


@router.get("")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="predictd", version=__version__, extensions=EXTENSIONS)


def _metadata(deployment: Deployment, runtime: ModelRuntime) -> ModelMetadata:
    meta = runtime.meta
    inputs, outputs = metadata_tensors(meta)
    details = runtime.details()
    parameters: dict[str, Any] = {
        "task": meta.task,
        "feature_names": list(meta.feature_names),
        "classes": list(meta.classes),
    }
    if details.execution_providers:
        parameters["execution_providers"] = list(details.execution_providers)
    if details.max_input_tokens is not None:
        parameters["max_input_tokens"] = details.max_input_tokens
    return ModelMetadata(
        name=meta.name,
        versions=[str(v) for v in served_versions(deployment)],
        platform=meta.flavor,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
    )


def _version_runtime(deployment: Deployment, version: int | None) -> ModelRuntime:
    if version is None:
        return deployment.production
    return deployment.pinned(version)[0]


@router.get("/models/{name}", responses=_READ_ERRORS)
async def model_metadata(name: str, services: ServicesDep, _: ReadScope) -> ModelMetadata:
    """Inputs, outputs and served versions of a model (production first, then a candidate)."""
    deployment = services.inference.deployment(name)
    return _metadata(deployment, deployment.production)


@router.get("/models/{name}/versions/{version}", responses=_READ_ERRORS)
async def model_version_metadata(
    name: str, version: VersionPath, services: ServicesDep, _: ReadScope
) -> ModelMetadata:
    deployment = services.inference.deployment(name)
    return _metadata(deployment, _version_runtime(deployment, version))


def _model_ready(services: Services, name: str, version: int | None) -> JSONResponse:
    deployment = services.inference.deployments.get(name)
    ready = False
    if deployment is not None:
        runtime = deployment.production if version is None else deployment.pinned(version)[0]
        ready = runtime.ready
    elif not services.loader.unloaded(name) and name not in services.loader.errors:
        raise ModelNotFound(f"model {name!r} is not served here")
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


_READY: dict[str, Any] = {
    "response_model": ModelReady,
    "responses": {400: {"model": ModelReady}, **_READ_ERRORS},
}


@router.get("/models/{name}/ready", **_READY)
async def model_ready(name: str, services: ServicesDep, _: ReadScope) -> JSONResponse:
    """200 when the model answers here; 400 while it loads, failed to load or is unloaded."""
    return _model_ready(services, name, None)


@router.get("/models/{name}/versions/{version}/ready", **_READY)
async def model_version_ready(
    name: str, version: VersionPath, services: ServicesDep, _: ReadScope
) -> JSONResponse:
    return _model_ready(services, name, version)


async def infer(call: Call) -> Response:
    """Predict with the model (its production version or the canary share's candidate, or
    the version the path names), in the protocol's JSON or binary tensor form."""
    services, request = call.services, call.request
    name, version = call.params["name"], call.params.get("version")
    inference = services.inference
    meta = _version_runtime(inference.deployment(name), version).meta
    header, binary = split_body(call.body, request.headers.get(HEADER_LENGTH))
    infer = parse_request(header)
    items, locate = to_items(decode_inputs(infer, binary), meta)
    if not items or len(items) > services.settings.inference.max_batch:
        raise InvalidInput(
            f"send 1 to {services.settings.inference.max_batch} rows", field="inputs[0].shape"
        )
    wanted = wanted_outputs(infer, meta)
    try:
        results: list[PredictionResult]
        if len(items) == 1:  # micro-batched with other requests, like /predict
            results = [await inference.predict(items[0], call.ctx, model=name, version=version)]
        else:
            batch = await inference.predict_batch(items, call.ctx, model=name, version=version)
            results = batch.predictions
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=locate(exc.field)) from None
    outputs, raw = encode_outputs(results, meta, wanted)
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(results[0].model_version),
        "outputs": outputs,
    }
    if infer.id is not None:
        answer["id"] = infer.id
    body = orjson.dumps(answer)
    headers = {"Vary": "Accept-Encoding"}
    media_type = "application/json"
    if raw:
        headers[HEADER_LENGTH] = str(len(body))
        body += raw
        media_type = "application/octet-stream"
    encoding = preferred_encoding(request.headers.get("accept-encoding"))
    if encoding is not None:
        body = encode_body(encoding, body)
        headers["Content-Encoding"] = encoding
    return Response(body, media_type=media_type, headers=headers)


_INFER: dict[str, Any] = {
    "responses": {**_INFER_OK, **_INFER_ERRORS},
    "response_model": InferResponse,
    "openapi_extra": _INFER_DOC,
}
INFER_ENDPOINTS = declare(
    [
        Endpoint(
            "/v2/models/{name}/infer", "predict", infer, name="infer", openapi=_INFER,
            doc="Predict with the model's production version (or the canary share's "
            "candidate).",
        ),
        Endpoint(
            "/v2/models/{name}/versions/{version}/infer", "predict", infer,
            name="infer_version", types={"version": VersionPath}, openapi=_INFER,
            doc="Predict with this version, which must be served here (production or "
            "candidate).",
        ),
    ],
    tags=["open inference protocol"],
)  # fmt: skip


async def _index(services: Services, ready_only: bool) -> list[RepositoryModel]:
    served = services.inference.deployments
    entries: dict[str, RepositoryModel] = {
        name: RepositoryModel(
            name=name,
            version=str(d.production.meta.version),
            state="READY" if d.production.ready else "LOADING",
        )
        for name, d in served.items()
    }
    try:
        production = await services.registry.serving_versions(
            services.settings.inference.models or None
        )
    except StorageUnavailable:
        production = []  # the registry is away: what this server serves is still true
    for v in production:
        if v.stage != "production" or v.name in entries:
            continue
        reason = services.loader.errors.get(v.name) or (
            "unloaded" if services.loader.unloaded(v.name) else "not loaded yet"
        )
        entries[v.name] = RepositoryModel(
            name=v.name, version=str(v.version), state="UNAVAILABLE", reason=reason
        )
    found = sorted(entries.values(), key=lambda e: e.name)
    return [e for e in found if e.state == "READY"] if ready_only else found


@router.get("/repository/index", responses=_READ_ERRORS)
async def repository_index(services: ServicesDep, _: ReadScope) -> list[RepositoryModel]:
    """The registry's production models and their state on this server."""
    return await _index(services, False)


@router.post("/repository/index", responses=_READ_ERRORS)
async def repository_index_post(
    services: ServicesDep,
    _: ReadScope,
    body: Annotated[RepositoryIndexRequest | None, Body()] = None,
) -> list[RepositoryModel]:
    """As GET; ``{"ready": true}`` lists only the models ready here (Triton's form)."""
    return await _index(services, body is not None and body.ready)


_ADMIN_ERRORS = _errors(401, 403, 404, 422, 503)


@router.post("/repository/models/{name}/load", responses=_ADMIN_ERRORS)
async def repository_load(name: str, services: ServicesDep, _admin: AdminScope) -> RepositoryModel:
    """Serve the model's production version here now (the registry's reload, for one name)."""
    await services.loader.load(name)
    deployment = services.inference.deployment(name)
    return RepositoryModel(
        name=name, version=str(deployment.production.meta.version), state="READY"
    )


@router.post("/repository/models/{name}/unload", responses=_ADMIN_ERRORS)
async def repository_unload(
    name: str, services: ServicesDep, _admin: AdminScope
) -> RepositoryModel:
    """Stop serving the model on this server until it is loaded again; the registry and
    other replicas are unchanged."""
    await services.loader.unload(name)
    return RepositoryModel(name=name, state="UNAVAILABLE", reason="unloaded")
