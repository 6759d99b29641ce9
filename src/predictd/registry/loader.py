"""ModelLoader: keeps what this server serves equal to what the registry says.

For every served model name that is its production version and, when canary or shadow
traffic is on, its candidate (the newest ``staging`` version). Start-up serves something as
soon as possible (the local manifest or the ``--model`` file while the database is down);
then the watcher re-reads the registry every ``registry_poll_s`` and hot-swaps what another
process (CLI, another replica) promoted, rolled back or staged.

A swap loads, verifies the sha256, checks the schema and warms the new version up before one
reference assignment; requests in flight keep the runtime they started with. A version that
fails any of that is never served: the old one keeps serving, and the failure is logged,
counted, and shown in /model-info and /ready until a later version loads. A failed version is
not retried at every poll (that would reload a broken file every few seconds), only when it
changes or on an explicit reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Literal

from predictd.errors import (
    ArtifactTampered,
    ModelNotFound,
    ModelNotReady,
    PredictdError,
    StorageUnavailable,
)
from predictd.inference.routing import Deployment
from predictd.inference.runtime import ModelRuntime
from predictd.inference.service import InferenceService
from predictd.observability import Metrics
from predictd.registry import events
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry

log = logging.getLogger("predictd.registry")

RETRY_S = 2.0
Role = Literal["production", "candidate"]


def _same(runtime: ModelRuntime | None, version: ModelVersion) -> bool:
    return (
        runtime is not None
        and runtime.meta.source == "registry"
        and runtime.meta.version == version.version
        and runtime.meta.sha256 == version.artifact_sha256
    )


class ModelLoader:
    def __init__(
        self, registry: ModelRegistry, inference: InferenceService, metrics: Metrics
    ) -> None:
        self.registry = registry
        self.inference = inference
        self.metrics = metrics
        self.settings = registry.settings
        # The latest load failure per (model name or "startup", role); cleared by a success.
        self._errors: dict[tuple[str, str], str] = {}
        self._failed: set[tuple[str, int, str]] = set()
        self._artifact: ModelVersion | None = None
        self._registered = False
        self._unloaded: set[str] = set()  # names unloaded here through the V2 repository API
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.listener = events.RegistryListener(registry.db.settings, self._wake)

    @property
    def errors(self) -> dict[str, str]:
        """Load failures still standing, by model name."""
        merged: dict[str, str] = {}
        for (name, _role), message in sorted(self._errors.items()):
            merged[name] = f"{merged[name]}; {message}" if name in merged else message
        return merged

    @property
    def last_error(self) -> str | None:
        return "; ".join(f"{n}: {e}" for n, e in self.errors.items()) or None

    @property
    def candidates_wanted(self) -> bool:
        return self.settings.canary_percent > 0 or self.settings.shadow

    def _default_name(self, available: Iterable[str]) -> str | None:
        names = sorted(available)
        if self.settings.models:
            return self.settings.models[0]
        if self._artifact is not None:
            return self._artifact.name
        if self.settings.model_name is not None:
            return self.settings.model_name
        if self.inference.default_name in names:
            return self.inference.default_name
        return names[0] if names else None

    async def attempt(self) -> bool:
        """One start-up try; True once the registry has been read (and what it says served)."""
        try:
            if self._artifact is None and self.settings.model_path is not None:
                self._artifact = await self.registry.artifact_from_path()
            if self._artifact is not None and not self._registered:
                await self.registry.register(self._artifact)
                self._registered = True
            await self.sync()
            return True
        except StorageUnavailable as exc:
            log.warning("registry unreachable; serving the local fallback", extra={"error": exc})
            await self._serve_fallback()
        except PredictdError as exc:
            self._errors["startup", "production"] = exc.message
            log.warning("model not loaded; retrying", extra={"error": exc.message})
        except Exception as exc:
            self._errors["startup", "production"] = repr(exc)
            log.exception("model load failed; retrying")
        return False

    async def serve_local(self) -> None:
        """Start-up while the database is known to be away: serve the local fallback without
        trying the registry first; ``watch`` registers and follows it once it is back."""
        try:
            if self._artifact is None and self.settings.model_path is not None:
                self._artifact = await self.registry.artifact_from_path()
            await self._serve_fallback()
        except PredictdError as exc:
            self._errors["startup", "production"] = exc.message
            log.warning("model not loaded; retrying", extra={"error": exc.message})

    async def _serve_fallback(self) -> None:
        """While the database is down at start-up: the `--model` file (the manifest's version
        if it is the same file, else unregistered as version 0), or what the manifest says
        this host served last."""
        if self.inference.deployments:
            return
        cached, default = self.registry.manifest.read_all()
        if self.settings.models:
            cached = [v for v in cached if v.name in self.settings.models]
        plan: list[tuple[ModelVersion, str]] = [(v, "manifest") for v in cached]
        if self._artifact is not None:
            same = [v for v, _ in plan if v.artifact_sha256 == self._artifact.artifact_sha256]
            plan = [(v, s) for v, s in plan if v.name != self._artifact.name]
            plan.append((same[0], "manifest") if same else (self._artifact, "unregistered"))
            default = self._artifact.name
        for version, source in plan:
            runtime = await self._load(version, "production", source=source)
            if runtime is not None:
                self.inference.deploy(Deployment(runtime), default=version.name == default)

    async def sync(self, *, retry_failed: bool = False) -> bool:
        """Make the served deployments match the registry; True when anything was swapped.
        Raises StorageUnavailable when the registry cannot be read."""
        async with self._lock:
            if retry_failed:
                self._failed.clear()
            versions = await self.registry.serving_versions(self.settings.models or None)
            production: dict[str, ModelVersion] = {}
            staging: dict[str, ModelVersion] = {}
            for v in versions:  # ordered by version: the newest staging version wins
                (production if v.stage == "production" else staging)[v.name] = v
            default = self._default_name(production)
            changed = False
            for name, wanted in production.items():
                if name in self._unloaded:
                    continue
                changed |= await self._sync_name(wanted, staging.get(name), default=name == default)
            self._errors.pop(("startup", "production"), None)
            return changed

    def unloaded(self, name: str) -> bool:
        return name in self._unloaded

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` on this server until ``load`` (the registry is unchanged,
        and other replicas keep serving it)."""
        async with self._lock:
            if name not in self.inference.deployments:
                raise ModelNotFound(f"model {name!r} is not served here")
            self._unloaded.add(name)
            self.inference.undeploy(name)
            self._errors = {k: v for k, v in self._errors.items() if k[0] != name}
            for role in ("production", "candidate"):
                self.metrics.served_version.labels(name, role).set(0)
        log.info("unloaded", extra={"model": name})

    async def load(self, name: str) -> None:
        """Serve ``name``'s production version here again (or for the first time), reading
        the registry now and retrying a version that failed before."""
        if self.settings.models and name not in self.settings.models:
            raise ModelNotFound(f"model {name!r} is not one this server serves (PREDICTD_MODELS)")
        self._unloaded.discard(name)
        await self.sync(retry_failed=True)
        if name in self.inference.deployments:
            return
        error = self.errors.get(name)
        if error is not None:
            raise ModelNotReady(error)
        raise ModelNotFound(f"model {name!r} has no production version in the registry")

    async def _sync_name(
        self, wanted: ModelVersion, staged: ModelVersion | None, *, default: bool
    ) -> bool:
        name = wanted.name
        current = self.inference.deployments.get(name)
        prod = current.production if current else None
        if _same(prod, wanted):
            self._errors.pop((name, "production"), None)  # e.g. rolled back from a broken one
        else:
            prod = await self._load(wanted, "production") or prod
        if prod is None:
            return False
        candidate: ModelRuntime | None = None
        if staged is None:
            self._errors.pop((name, "candidate"), None)  # the failed candidate was withdrawn
        elif self.candidates_wanted and staged.version != wanted.version:
            old = current.candidate if current else None
            candidate = old if _same(old, staged) else await self._load(staged, "candidate")
        if current is not None and current.production is prod and current.candidate is candidate:
            if default and self.inference.default_name != name:
                self.inference.default_name = name
            return False
        self.inference.deploy(Deployment(prod, candidate), default=default)
        self.metrics.served_version.labels(name, "production").set(prod.meta.version)
        self.metrics.served_version.labels(name, "candidate").set(
            candidate.meta.version if candidate else 0
        )
        if _same(prod, wanted):  # remember it for a start-up with the database down
            self.registry.manifest.write(wanted, default=default)
        log.info(
            "serving",
            extra={
                "model": name,
                "version": prod.meta.version,
                "candidate": candidate.meta.version if candidate else None,
            },
        )
        return True

    async def _load(
        self, version: ModelVersion, role: Role, *, source: str = "registry"
    ) -> ModelRuntime | None:
        key = (version.name, version.version, version.artifact_sha256)
        if key in self._failed:
            return None
        try:
            runtime = await self.registry.load(version, source)
        except PredictdError as exc:
            self._failed.add(key)
            self._errors[version.name, role] = f"v{version.version} ({role}): {exc.message}"
            reason = "tampered" if isinstance(exc, ArtifactTampered) else "invalid"
            self.metrics.model_load_failures.labels(version.name, role, reason).inc()
            message = "model version failed to load; it is not served"
            if reason == "tampered":
                message = "ALERT: artifact bytes changed since registration; it is not served"
            log.error(
                message,
                extra={
                    "model": version.name,
                    "version": version.version,
                    "role": role,
                    "error": exc.message,
                },
            )
            return None
        self._errors.pop((version.name, role), None)
        return runtime

    async def watch(self, poll_s: float) -> None:
        """Get the registry's versions served, then follow promotions and rollbacks: at
        once on a PostgreSQL notice, and every ``poll_s`` in any case."""
        while True:
            if await self.attempt():
                break
            await asyncio.sleep(RETRY_S)
        listener = asyncio.create_task(self.listener.run(), name="registry-listen")
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that
                # lands as the notice does, and shutdown then waits on this task for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_s):
                        await self._wake.wait()
                self._wake.clear()
                await self._poll()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _poll(self) -> None:
        try:
            await self.sync()
        except StorageUnavailable as exc:
            log.warning("registry poll failed", extra={"error": exc.message})
        except Exception:
            log.exception("registry poll failed")
