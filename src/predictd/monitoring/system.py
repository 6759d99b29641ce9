"""Periodic samples of the server's own health into ``system_metrics``.

Prometheus already scrapes the live values; this keeps a history in the database so the
dashboard and the alert rules can look back without a Prometheus server. A sample that cannot
be written (the database is away) is dropped: the history may have gaps, serving never waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.monitoring.repository import SystemMetricsRepository
from predictd.recording.recorder import RecorderState

log = logging.getLogger("predictd.system")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> float | None:
    """Resident memory now (Linux /proc); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return float(int(f.read().split()[1]) * PAGE_SIZE)
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class CpuClock:
    """CPU use of this process between two readings, in percent of one core."""

    wall: float = 0.0
    cpu: float = 0.0

    def percent(self) -> float | None:
        wall, cpu = time.monotonic(), time.process_time()
        previous_wall, previous_cpu = self.wall, self.cpu
        self.wall, self.cpu = wall, cpu
        if previous_wall == 0.0 or wall <= previous_wall:
            return None
        return 100.0 * (cpu - previous_cpu) / (wall - previous_wall)


async def loop_lag_ms(probe_s: float = 0.01) -> float:
    """How late the event loop wakes a timer: what every request is waiting on top of its work."""
    started = time.perf_counter()
    await asyncio.sleep(probe_s)
    return max(0.0, (time.perf_counter() - started - probe_s) * 1000)


class SystemSampler:
    def __init__(
        self,
        db: Database,
        recorder_state: Callable[[], RecorderState],
        pool_in_use: Callable[[], int],
    ) -> None:
        self.db = db
        self.recorder_state = recorder_state
        self.pool_in_use = pool_in_use
        self.labels = {"host": socket.gethostname(), "pid": os.getpid()}
        self._cpu = CpuClock()
        self._cpu.percent()  # start the clock

    async def sample(self) -> dict[str, float]:
        state = self.recorder_state()
        values: dict[str, float | None] = {
            "cpu_percent": self._cpu.percent(),
            "rss_bytes": rss_bytes(),
            "event_loop_lag_ms": await loop_lag_ms(),
            "recorder_queue_depth": float(state.queue_depth),
            "spool_bytes": float(state.spool_bytes),
            "recorder_backlog": float(state.last_lsn - state.committed_lsn),
            "db_pool_in_use": float(self.pool_in_use()),
        }
        return {name: value for name, value in values.items() if value is not None}

    async def record(self) -> int:
        values = await self.sample()
        now = datetime.now(UTC)
        rows = [
            {"ts": now, "name": name, "value": value, "labels": self.labels}
            for name, value in values.items()
        ]
        async with translate_errors("recording system metrics"), self.db.engine.begin() as conn:
            await SystemMetricsRepository(conn).add(rows)
        return len(rows)

    async def forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.record()
            except Exception as exc:  # the database is away: a gap, not a failure
                log.debug("system metrics not recorded", extra={"error": repr(exc)})


def pool_in_use(db: Database) -> int:
    """Connections the API's pool has handed out (0 for pools that do not count)."""
    checkedout = getattr(db.engine.pool, "checkedout", None)
    return int(checkedout()) if callable(checkedout) else 0


async def history(
    db: Database, name: str | None, start: datetime | None, end: datetime | None, limit: int
) -> list[dict[str, Any]]:
    async with translate_errors("reading system metrics"), db.engine.connect() as conn:
        return await SystemMetricsRepository(conn).history(name, start, end, limit)


async def purge(db: Database, days: int) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=days)
    async with db.engine.begin() as conn:
        return await SystemMetricsRepository(conn).purge(cutoff)
