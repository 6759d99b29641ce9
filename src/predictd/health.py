"""Readiness: can this replica answer and keep what it answers? Never follows the database
alone — a replica that can spool is ready; the body says how the database is doing."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from sqlalchemy import text

from predictd.db.engine import Database
from predictd.recording.recorder import PredictionRecorder
from predictd.registry.loader import ModelLoader


@dataclass(frozen=True)
class CheckResult:
    state: str  # ok | degraded | failing
    detail: str | None = None


class ReadinessProbe:
    def __init__(
        self,
        db: Database,
        recorder: PredictionRecorder,
        loader: ModelLoader,
        cache_s: float = 2.0,
    ) -> None:
        self.loader = loader
        self.db = db
        self.recorder = recorder
        self.cache_s = cache_s
        self._db_checked_at = -1e9
        self._db_result = CheckResult("failing", "not checked yet")

    async def database(self) -> CheckResult:
        now = time.monotonic()
        if now - self._db_checked_at < self.cache_s:
            return self._db_result
        try:
            async with asyncio.timeout(2.0), self.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            result = CheckResult("ok", self.db.display_url)
        except Exception as exc:
            result = CheckResult("failing", f"{type(exc).__name__}: unreachable")
        self._db_checked_at, self._db_result = time.monotonic(), result
        return result

    def model(self) -> CheckResult:
        runtime = self.loader.inference.runtime
        if runtime is None or not runtime.ready:
            return CheckResult("failing", "no model loaded")
        meta = runtime.meta
        detail = f"{meta.name} v{meta.version} ({meta.source})"
        if self.loader.last_error:
            detail += f"; last load failed: {self.loader.last_error}"
        return CheckResult("ok", detail)

    def spool(self) -> CheckResult:
        spool = self.recorder.spool
        if spool is None:
            return CheckResult("degraded", "durability=memory: no spool")
        if spool.full:
            return CheckResult("failing", f"full ({spool.size_bytes} bytes)")
        if not os.access(spool.dir, os.W_OK):
            return CheckResult("failing", f"{spool.dir} is not writable")
        return CheckResult("ok", f"{spool.pending_bytes} bytes pending")

    async def checks(self) -> tuple[bool, dict[str, CheckResult]]:
        checks = {"model": self.model(), "database": await self.database(), "spool": self.spool()}
        can_persist = checks["database"].state == "ok" or checks["spool"].state == "ok"
        if checks["database"].state != "ok" and checks["spool"].state == "ok":
            checks["database"] = CheckResult("degraded", checks["database"].detail)
        return checks["model"].state == "ok" and can_persist, checks
