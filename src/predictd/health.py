"""Readiness: can this replica answer and keep what it answers? Never follows the database
alone — a replica that can spool is ready; the body says how the database is doing.

A probe must answer in milliseconds whatever the database does, so the database is checked
in the background and /ready reports the latest result; a hung database makes that result
stale, never the probe slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text

from predictd.db.engine import Database
from predictd.recording.recorder import PredictionRecorder
from predictd.registry.loader import ModelLoader

DB_CHECK_TIMEOUT_S = 2.0
FIRST_CHECK_WAIT_S = 0.5

Phase = Literal["starting", "serving", "draining"]

# Set by the serve command's signal handler (a process-wide fact, like the signal itself).
_draining = threading.Event()


def begin_draining() -> None:
    """From now on /ready answers 503, so load balancers stop sending; serving goes on."""
    _draining.set()


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
        self.started = False
        self._db_checked_at = -1e9
        self._db_result = CheckResult("failing", "not checked yet")
        self._db_task: asyncio.Task[None] | None = None

    @property
    def phase(self) -> Phase:
        if _draining.is_set():
            return "draining"
        return "serving" if self.started else "starting"

    async def _check_database(self) -> None:
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT_S), self.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            result = CheckResult("ok", self.db.display_url)
        except Exception as exc:
            result = CheckResult("failing", f"{type(exc).__name__}: unreachable")
        self._db_checked_at, self._db_result = time.monotonic(), result

    async def database(self) -> CheckResult:
        """The latest background check; only the very first call waits (briefly) for one."""
        stale = time.monotonic() - self._db_checked_at >= self.cache_s
        if stale and (self._db_task is None or self._db_task.done()):
            self._db_task = asyncio.create_task(self._check_database())
        if self._db_checked_at < 0 and self._db_task is not None:
            await asyncio.wait({self._db_task}, timeout=FIRST_CHECK_WAIT_S)
        return self._db_result

    async def close(self) -> None:
        if self._db_task is not None:
            self._db_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._db_task

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

    def server(self) -> CheckResult:
        phase = self.phase
        return CheckResult("ok" if phase == "serving" else "failing", phase)

    async def checks(self) -> tuple[bool, dict[str, CheckResult]]:
        checks = {
            "server": self.server(),
            "model": self.model(),
            "database": await self.database(),
            "spool": self.spool(),
        }
        if self.recorder.spool is None:  # durability=memory: the database is the only home
            can_persist = checks["database"].state == "ok"
        else:  # every record goes through the spool, whatever the database does
            can_persist = (
                checks["spool"].state == "ok"
                or self.recorder.settings.spool_full_policy == "shed"  # answers, uncounted
            )
        if checks["database"].state != "ok" and checks["spool"].state == "ok":
            checks["database"] = CheckResult("degraded", checks["database"].detail)
        ready = checks["server"].state == "ok" and checks["model"].state == "ok"
        return ready and can_persist, checks
