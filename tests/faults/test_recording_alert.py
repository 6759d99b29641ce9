"""The recording alert with a real `predictd serve` and a TCP proxy that cuts PostgreSQL: the
webhook hears of it while the database is away, and of its end once it is back, and the alert
is stored (resolved) in the database afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.support.proxy import TcpProxy
from tests.support.server import (
    ServerPool,
    database_name,
    pg_dsn,
    predict_many,
    wait_all_recorded,
    wait_for,
)
from tests.support.webhook import webhook_sink

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def stored_alerts(url: str) -> list[tuple[str, str, str | None]]:
    async def fetch() -> list[tuple[str, str, str | None]]:
        conn = await asyncpg.connect(pg_dsn(url), timeout=5)
        try:
            rows = await conn.fetch("SELECT rule, status, resolved_by FROM alerts ORDER BY id")
            return [(r["rule"], r["status"], r["resolved_by"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_recording_alert_fires_while_the_database_is_away(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    with webhook_sink(failures=1) as hook:
        server = servers.start(
            proxy.url(database_name(postgres_url)),
            spool_dir=tmp_path / "spool",
            env={"PREDICTD_ALERT_RECORDING_S": "1", "PREDICTD_ALERT_WEBHOOK_URL": hook.url},
        )
        with server.client() as client:
            ids = predict_many(client, 5, prefix="before")
            proxy.cut()
            ids += predict_many(client, 20, prefix="during")
        wait_for(lambda: hook.events() == ["opened"], 30, "the webhook to hear of the outage")
        opened = hook.received[0]["alert"]
        assert opened["rule"] == "recording"
        assert "unreachable" in opened["message"]
        labels = {"rule": "recording", "severity": "critical"}
        assert server.metric("predictd_alerts_active", labels) == 1

        proxy.restore()
        wait_all_recorded(postgres_url, ids, 30)
        wait_for(lambda: hook.events() == ["opened", "resolved"], 30, "the all-clear")
        assert server.metric("predictd_alerts_active", labels) == 0
        wait_for(
            lambda: stored_alerts(postgres_url) == [("recording", "resolved", "predictd")],
            30,
            "the alert to be stored, resolved",
            lambda: str(stored_alerts(postgres_url)),
        )
