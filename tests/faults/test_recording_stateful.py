"""A hypothesis state machine over a real `predictd serve`, a PostgreSQL cluster of the test's
own and the server's spool: predict, db_down, db_up, crash_restart (SIGKILL, then a new
process on the same spool) and drain, in generated orders (derandomized).

After every step: each acknowledged prediction is in the database or in the spool on disk
(the spool is read before the database, so a record moving between them is always seen), no
id is stored twice, and memory and the spool stay bounded. After a drain every acknowledged
prediction is in the database.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support.pgcluster import OwnCluster
from tests.support.server import ServerPool, ServerProcess, id_counts, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HEADER = struct.Struct("<IIQ")
RSS_LIMIT_BYTES = 600 << 20
SPOOL_LIMIT_BYTES = 64 << 20
DRAIN_S = 30.0


def spooled_ids(spool: Path) -> set[str]:
    """Ids of every whole frame in the spool's segments (a tail being written is skipped)."""
    ids: set[str] = set()
    for path in sorted(spool.glob("w*/*.seg")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted after its records were committed: in the DB
            continue
        offset = 0
        while offset + HEADER.size <= len(data):
            length, _crc, _lsn = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            if start + length > len(data):
                break
            ids.add(orjson.loads(data[start : start + length])["id"])
            offset = start + length
    return ids


def spool_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.glob("w*/*.seg") if p.exists())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Recording(RuleBasedStateMachine):
    pool: ServerPool
    cluster: OwnCluster
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.spool = Path()
        self.server: ServerProcess | None = None
        self.acked: set[str] = set()

    @initialize()
    def start(self) -> None:
        self.cluster.thaw()
        if not self.cluster.running:
            self.cluster.start()
        name = f"s_{uuid.uuid4().hex[:10]}"
        asyncio.run(self.cluster.fetch("postgres", f'CREATE DATABASE "{name}"'))
        self.url = self.cluster.url(name)
        self.spool = self.root / name
        self.server = self.pool.start(self.url, spool_dir=self.spool)

    def teardown(self) -> None:
        if self.server is None:
            return
        try:
            if self.server.running:
                self.drain()  # whatever the sequence, it ends with everything stored once
        finally:
            self.server.kill()

    @property
    def live(self) -> ServerProcess:
        assert self.server is not None
        return self.server

    @rule(count=st.integers(min_value=1, max_value=25))
    def predict(self, count: int) -> None:
        with self.live.client() as client:
            for n in range(count):
                response = client.post("/predict", json={"text": f"state {n}: I love it"})
                assert response.status_code == 200, f"{response.text}\n{self.live.describe()}"
                self.acked.add(response.json()["prediction_id"])

    @precondition(lambda self: self.cluster.running)
    @rule()
    def db_down(self) -> None:
        self.cluster.stop("fast")

    @precondition(lambda self: not self.cluster.running)
    @rule()
    def db_up(self) -> None:
        self.cluster.start()

    @rule()
    def crash_restart(self) -> None:
        self.live.kill()
        self.server = self.pool.start(self.url, spool_dir=self.spool)

    @rule()
    def drain(self) -> None:
        if not self.cluster.running:
            self.cluster.start()
        wanted = sorted(self.acked)
        wait_for(
            lambda: all(n == 1 for n in id_counts(self.url, wanted).values()),
            DRAIN_S,
            "every acknowledged prediction stored",
            self.live.describe,
        )

    @invariant()
    def acked_are_kept(self) -> None:
        if not self.acked:
            return
        in_spool = spooled_ids(self.spool)  # first: a record leaves the spool after the DB
        in_db = id_counts(self.url, self.acked) if self.cluster.running else None
        stored = {i for i, n in in_db.items() if n} if in_db is not None else set()
        missing = self.acked - in_spool - stored
        if in_db is None:  # the database is down: everything acknowledged must be spooled
            assert not missing, f"{len(missing)} acknowledged ids neither spooled nor stored"
        else:
            assert not missing, f"{len(missing)} acknowledged ids lost: {sorted(missing)[:3]}"
            assert all(n <= 1 for n in in_db.values()), "an id stored twice"

    @invariant()
    def bounded(self) -> None:
        if self.server is None:
            return
        assert rss_bytes(self.live.proc.pid) < RSS_LIMIT_BYTES
        assert spool_bytes(self.spool) < SPOOL_LIMIT_BYTES


def test_acknowledged_predictions_survive_any_sequence(
    servers: ServerPool, own_cluster: OwnCluster, tmp_path: Path
) -> None:
    Recording.pool = servers
    Recording.cluster = own_cluster
    Recording.root = tmp_path
    run_state_machine_as_test(
        Recording,
        settings=settings(
            max_examples=3,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
