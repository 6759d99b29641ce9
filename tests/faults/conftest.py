"""Fixtures for fault injection: a cuttable link to PostgreSQL (server processes: the
shared ``servers`` fixture in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.support.proxy import TcpProxy


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the PostgreSQL that holds ``postgres_url``."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as p:
        yield p
