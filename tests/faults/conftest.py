"""Fixtures for fault injection: a cuttable link to PostgreSQL (server processes: the
shared ``servers`` fixture in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.support import pgcluster, services
from tests.support.pgcluster import OwnCluster
from tests.support.proxy import TcpProxy


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
