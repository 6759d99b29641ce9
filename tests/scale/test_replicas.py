"""Three `predictd serve` replicas on one PostgreSQL and one Redis, behind a round-robin TCP
proxy the test runs, as pods behind a Kubernetes Service. Under load: a promotion, a replica
SIGKILLed and restarted on its spool, and PostgreSQL cut for 10 s. Then: every 2xx
prediction is in the table exactly once, the rollups equal the raw rows, every replica served
the new version within the poll interval, a key's rate limit is one budget across the three,
the monitor ran one pass per interval, not one per replica, and each approved agent action
was run once, by one replica.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from predictd.agent.actions import Proposal
from predictd.agent.service import ActionService
from predictd.cli import app
from predictd.db.engine import Database
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.load import Load, judge
from tests.support.proxy import TcpProxy
from tests.support.server import ServerPool, ServerProcess, database_name, pg_dsn, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLICAS = 3
POLL_S = 1.0  # PREDICTD_REGISTRY_POLL_S
FOLLOW_BOUND_S = POLL_S + 2.0
MONITOR_S = 2.0  # PREDICTD_MONITOR_INTERVAL_S
OUTAGE_S = 10.0
ACTIONS = 5
RATE, BURST = 40.0, 40  # per key, shared through Redis


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"predictd {' '.join(args)}: {result.output}"
    return str(result.stdout)


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def rows(url: str, sql: str) -> list[asyncpg.Record]:
    return asyncio.run(_rows(url, sql))


async def propose_incidents(url: str, count: int) -> None:
    """``count`` auto-approved incidents (the cheapest action: no webhook is set)."""
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        service = ActionService(db)
        for n in range(count):
            proposal = Proposal("open_incident", f"model-{n}", "replica test", "low",
                                requires_approval=False)  # fmt: skip
            assert await service.propose(proposal, ttl=timedelta(hours=1)) is not None
    finally:
        await db.dispose()


def finished(url: str) -> int:
    return len(rows(url, "SELECT id FROM agent_actions WHERE status IN ('succeeded', 'failed')"))


def served_version(server: ServerProcess, key: str) -> int | None:
    try:
        with httpx.Client(base_url=server.base_url, timeout=2) as client:
            info = client.get("/model-info", headers={"authorization": f"Bearer {key}"})
    except httpx.TransportError:
        return None
    return int(info.json()["version"]) if info.status_code == 200 else None


def test_three_replicas_under_faults(
    servers: ServerPool,
    postgres_url: str,
    redis_url: str,
    artifacts: Artifacts,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(servers.root / "artifacts"))
    cli("db", "upgrade")
    for path, stage in (
        (artifacts.sentiment.path, "production"),
        (artifacts.sentiment_alt.path, "none"),
    ):
        cli("models", "register", str(path), "--name", "sentiment", "--stage", stage)
    load_key = cli("keys", "create", "--name", "load", "--scope", "predict,read").split()[0]
    probe_key = cli("keys", "create", "--name", "probe", "--scope", "predict,read").split()[0]

    with TcpProxy(upstream_port=5432) as database:
        via_proxy = database.url(database_name(postgres_url))
        env = {
            "PREDICTD_MODEL_NAME": "sentiment",
            "PREDICTD_AUTH": "on",
            "REDIS_URL": redis_url,
            "PREDICTD_REGISTRY_POLL_S": str(POLL_S),
            "PREDICTD_MONITOR_INTERVAL_S": str(MONITOR_S),
            "PREDICTD_RATE_LIMIT_PER_S": str(RATE),
            "PREDICTD_RATE_LIMIT_BURST": str(BURST),
            "PREDICTD_AGENT": "true",
            "PREDICTD_AGENT_EXECUTE_INTERVAL_S": "0.2",
        }

        def start(n: int) -> ServerProcess:
            return servers.start(
                via_proxy, spool_dir=tmp_path / f"spool{n}", env=env, model=None, wait=False
            )

        replicas = [start(n) for n in range(REPLICAS)]
        for replica in replicas:
            replica.wait_healthy()
        with TcpProxy(balance=[r.port for r in replicas]) as balancer:
            base = f"http://127.0.0.1:{balancer.port}"
            # 8 clients at 30 req/s in all: under the key's 40/s, so the load is never limited.
            load = Load(base, prefix="replicas", clients=8, rate_per_s=30,
                        headers={"authorization": f"Bearer {load_key}"}).start()  # fmt: skip
            time.sleep(3)

            promoted = time.monotonic()
            cli("models", "promote", "sentiment", "2")
            seen: dict[int, float] = {}
            while len(seen) < REPLICAS and time.monotonic() < promoted + FOLLOW_BOUND_S + 10:
                for n, replica in enumerate(replicas):
                    if n not in seen and served_version(replica, probe_key) == 2:
                        seen[n] = time.monotonic() - promoted
                time.sleep(0.05)
            assert len(seen) == REPLICAS, f"replicas serving v2: {seen}"
            assert max(seen.values()) <= FOLLOW_BOUND_S, seen

            time.sleep(2)
            replicas[1].kill()  # SIGKILL: its unshipped records stay in its spool
            replicas[1] = start(1)  # same spool directory: replayed at start
            replicas[1].wait_healthy()
            balancer.set_upstreams([r.port for r in replicas])
            time.sleep(2)

            database.cut()
            time.sleep(OUTAGE_S)
            database.restore()
            time.sleep(3)
            ledger = load.stop()

            # Approved actions, polled by the three executors: each runs on one replica, once.
            asyncio.run(propose_incidents(postgres_url, ACTIONS))
            wait_for(
                lambda: finished(postgres_url) == ACTIONS, timeout_s=30,
                what="every approved action to finish", details=servers.report,
            )  # fmt: skip

            # The rate limit is one budget: a burst of requests spread over the three
            # replicas gets about BURST through (plus what refills meanwhile), not 3 x BURST.
            limited = Load(base, prefix="limit", clients=6, rate_per_s=1000,
                           headers={"authorization": f"Bearer {probe_key}"}).start()  # fmt: skip
            time.sleep(1.0)
            burst = limited.stop()

        details = servers.report()
        assert not ledger.refused, f"non-2xx answers {ledger.statuses}\n{details}"
        verdict = judge(postgres_url, ledger, "replicas")
        deadline = time.monotonic() + 30
        while verdict.lost and time.monotonic() < deadline:
            time.sleep(0.5)
            verdict = judge(postgres_url, ledger, "replicas")
        verdict.assert_nothing_lost(details)
        assert verdict.answered > 500, verdict.answered

        allowed = len(burst.answered)
        limited_429 = burst.statuses[429]
        assert limited_429 > 0, burst.statuses
        assert allowed <= BURST + RATE * 1.5, (allowed, burst.statuses)  # one bucket, not three

    # Exactly one replica ran each action, and it succeeded.
    ran = rows(postgres_url, "SELECT status, attempts, lease_owner FROM agent_actions")
    assert [(r["status"], r["attempts"]) for r in ran] == [("succeeded", 1)] * ACTIONS, ran

    # Rollups equal the raw rows (the killed replica's replay added no double counts).
    [totals] = rows(postgres_url, "SELECT (SELECT coalesce(sum(count), 0) FROM prediction_rollups)"
                    " AS rolled, (SELECT count(*) FROM predictions) AS stored")  # fmt: skip
    assert totals["rolled"] == totals["stored"], dict(totals)

    # One monitor pass per interval across the three: consecutive passes of a version are an
    # interval apart (less the claim's slack), never two in one interval.
    passes = rows(postgres_url, "SELECT model_version, computed_at FROM performance_metrics "
                  "ORDER BY model_version, computed_at")  # fmt: skip
    by_version: dict[int, list[datetime]] = {}
    for row in passes:
        by_version.setdefault(row["model_version"], []).append(row["computed_at"])
    assert sum(len(v) for v in by_version.values()) >= 5, by_version
    for version, times in by_version.items():
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(gap >= MONITOR_S * 0.9 for gap in gaps), (version, gaps)
