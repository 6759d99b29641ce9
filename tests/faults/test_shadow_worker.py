"""The shadow candidate's worker process (`PREDICTD_SHADOW_PROCESS=true`), with real signals
against a real `predictd serve`.

The promises under test: a worker killed mid-flight costs only the shadow work it held (counted
as dropped; production answers carry on) and a new worker takes the next work; a server killed
with SIGKILL leaves no shadow worker behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.registry.models import Stage
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.server import ServerPool, ServerProcess, wait_for

pytestmark = [pytest.mark.slow]

GONE_WITHIN_S = 5.0  # the worker checks for its parent every second


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (zombies count as gone), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def shadow_worker_of(server: ServerProcess) -> int:
    """The server's child running the shadow worker (spawned by multiprocessing)."""
    workers = [
        pid
        for pid in children(server.proc.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 1, f"expected one shadow worker, found {workers}"
    return workers[0]


def predict(server: ServerProcess, count: int, tag: str) -> None:
    with server.client() as client:
        for n in range(count):
            response = client.post("/predict", json={"text": f"great product {tag} {n}"})
            assert response.status_code == 200, response.text
            assert response.json()["variant"] == "production"


def shadow_accounted(server: ServerProcess) -> tuple[float, float]:
    return (
        server.metric("predictd_shadow_predictions_total"),
        server.metric("predictd_shadow_dropped_total"),
    )


def register_versions(root: Path, database_url: str, artifacts: Artifacts) -> None:
    settings = Settings(database_url=database_url, artifact_dir=root / "artifacts")

    async def run() -> None:
        db = Database(settings.database)
        try:
            await migrate.upgrade(db)
            registry = ModelRegistry(settings.inference, db)
            versions: list[tuple[Path, Stage]] = [
                (artifacts.sentiment.path, "production"),
                (artifacts.sentiment_alt.path, "staging"),
            ]
            for path, stage in versions:
                version = registry.inspect(path, "sentiment")
                await registry.register(version, stage=stage, reuse=False)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_a_killed_shadow_worker_is_replaced_and_dies_with_its_server(
    servers: ServerPool, artifacts: Artifacts, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'shadow.db'}"
    register_versions(servers.root, database_url, artifacts)
    server = servers.start(
        database_url,
        spool_dir=tmp_path / "spool",
        env={
            "PREDICTD_SHADOW": "true",
            "PREDICTD_SHADOW_PROCESS": "true",
            "PREDICTD_SHADOW_LINGER_MS": "20",
        },
        model=None,
    )

    predict(server, 10, "before")
    wait_for(lambda: shadow_accounted(server) == (10, 0), 30, "the first shadow work")
    first = shadow_worker_of(server)

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), GONE_WITHIN_S, "the killed worker to go")
    predict(server, 10, "during")  # the work sent to the dead worker is dropped, and counted
    wait_for(lambda: sum(shadow_accounted(server)) == 20, 30, "the shadow work to be counted")
    predict(server, 10, "after")
    wait_for(lambda: sum(shadow_accounted(server)) == 30, 30, "the shadow work to be counted")
    done, dropped = shadow_accounted(server)
    assert 1 <= dropped <= 10
    assert done >= 20  # everything after the dropped call was shadowed by a new worker
    second = shadow_worker_of(server)
    assert second != first

    server.kill()
    wait_for(lambda: not alive(second), GONE_WITHIN_S, "the worker to exit with its server")
