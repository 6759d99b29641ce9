"""ModelLoader: gets a model serving at start-up and keeps it the registry's production one.

Start-up serves something as soon as possible (a local fallback while the database is down),
then the watcher polls the registry every ``registry_poll_s`` and hot-swaps when another
process (CLI, another replica) promoted or rolled back. A swap loads and verifies the new
version completely before one reference assignment; requests in flight keep the runtime they
started with. A version that fails to load is never served: the old one keeps serving and
the error is kept for /model-info and /ready.
"""

from __future__ import annotations

import asyncio
import logging

from predictd.errors import PredictdError
from predictd.inference.service import InferenceService
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry

log = logging.getLogger("predictd.registry")

RETRY_S = 2.0


class ModelLoader:
    def __init__(self, registry: ModelRegistry, inference: InferenceService) -> None:
        self.registry = registry
        self.inference = inference
        self.last_error: str | None = None
        self._candidate: ModelVersion | None = None
        self._name: str | None = registry.settings.model_name

    async def attempt(self) -> bool:
        """One try at start-up; True once the registry's version is being served."""
        try:
            if self._candidate is None:
                self._candidate = await self.registry.candidate_from_path()
            resolved = await self.registry.resolve_serving(self._candidate)
            if resolved is None:
                return False
            version, source = resolved
            if self.inference.runtime is None or source == "registry":
                self.inference.set_runtime(await self.registry.load(version, source))
                self._name = version.name
                self.last_error = None
            return source == "registry"
        except PredictdError as exc:
            self.last_error = exc.message
            log.warning("model not loaded; retrying", extra={"error": exc.message})
        except Exception as exc:
            self.last_error = repr(exc)
            log.exception("model load failed; retrying", extra={"error": repr(exc)})
        return False

    async def reload(self) -> bool:
        """Swap to the registry's production version if it is not the one served.
        Returns True when a new version was swapped in."""
        current = self.inference.runtime
        name = self._name or (current.meta.name if current is not None else None)
        wanted = await self.registry.production(name)
        if wanted is None:
            return False
        if (
            current is not None
            and current.meta.version == wanted.version
            and current.meta.sha256 == wanted.artifact_sha256
            and current.meta.source == "registry"
        ):
            return False
        try:
            runtime = await self.registry.load(wanted, "registry")
        except PredictdError as exc:
            self.last_error = f"v{wanted.version}: {exc.message}"
            log.error(
                "new production version failed to load; still serving the old one",
                extra={"model": wanted.name, "version": wanted.version, "error": exc.message},
            )
            raise
        self.inference.set_runtime(runtime)
        self._name = wanted.name
        self.last_error = None
        log.info("hot-swapped model", extra={"model": wanted.name, "version": wanted.version})
        return True

    async def watch(self, poll_s: float) -> None:
        """Get to the registry's version, then follow promotions and rollbacks."""
        while True:
            if await self.attempt():
                break
            await asyncio.sleep(RETRY_S)
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self.reload()
            except PredictdError:
                pass  # logged by reload; retried at the next poll
            except Exception:
                log.exception("registry poll failed")
