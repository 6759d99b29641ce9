"""System metric samples: what a server writes on its schedule, the history endpoint, and
retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from predictd.db.tables import system_metrics
from predictd.monitoring import system
from tests.support.app import make_settings, running_app, services_of

NAMES = {
    "cpu_percent",
    "rss_bytes",
    "event_loop_lag_ms",
    "recorder_queue_depth",
    "spool_bytes",
    "recorder_backlog",
    "db_pool_in_use",
}


async def test_a_server_samples_itself_on_schedule(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, system_metrics_interval_s=0.05)
    async with running_app(settings) as (app, client):
        db = services_of(app).db
        deadline = time.monotonic() + 20
        while True:
            listed = (await client.get("/analytics/system", params={"limit": 1000})).json()
            if {item["name"] for item in listed["items"]} == NAMES:
                break
            assert time.monotonic() < deadline, f"samples seen: {listed}"
            await asyncio.sleep(0.05)
        samples = {item["name"]: item for item in listed["items"]}
        assert samples["rss_bytes"]["value"] > 10 * 2**20  # a Python process with FastAPI
        assert samples["event_loop_lag_ms"]["value"] >= 0
        assert samples["cpu_percent"]["labels"]["pid"] == os.getpid()

        lag = (await client.get("/analytics/system", params={"name": "event_loop_lag_ms"})).json()
        assert lag["items"]
        assert {i["name"] for i in lag["items"]} == {"event_loop_lag_ms"}

        old = datetime.now(UTC) - timedelta(days=40)
        async with db.engine.begin() as conn:
            await conn.execute(update(system_metrics).values(ts=old))
        assert await system.purge(db, days=30) >= len(NAMES)
        async with db.engine.connect() as conn:
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(system_metrics)
                    .where(system_metrics.c.ts < old + timedelta(days=1))
                )
            ).scalar()
        assert left == 0
