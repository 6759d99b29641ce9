"""Fixtures for fault injection: a cuttable link to PostgreSQL (server processes: the
shared ``servers`` fixture in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.engine import make_url

from tests.support import pgcluster, services
from tests.support.pgcluster import OwnCluster
from tests.support.proxy import TcpProxy
from tests.support.server import free_port


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the PostgreSQL that holds ``postgres_url``."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as p:
        yield p


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[OwnCluster]:
    """A PostgreSQL cluster of this module's own, to stop, kill and freeze."""
    why = pgcluster.available()
    if why is not None:
        services.unavailable(f"a PostgreSQL cluster of the tests' own ({why})")
    cluster = OwnCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_pg(own_cluster: OwnCluster) -> str:
    """A fresh database on the own cluster (running and thawed), as a URL."""
    own_cluster.thaw()
    if not own_cluster.running:
        own_cluster.start()
    name = f"m_{uuid.uuid4().hex[:10]}"
    asyncio.run(own_cluster.fetch("postgres", f'CREATE DATABASE "{name}"'))
    return own_cluster.url(name)


@pytest.fixture
def own_redis() -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own (its port in ``.port``), to hang and kill."""
    if shutil.which("redis-server") is None:
        services.unavailable("redis-server (the binary, to run a Redis of the test's own)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                break
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    client.close()
    proc.port = port  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)
