"""Fixtures for fault injection: a cuttable link to PostgreSQL and real server processes."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Artifacts
from tests.support.proxy import TcpProxy
from tests.support.server import ServerPool

_REPORT_KEY = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_REPORT_KEY] = report
    return report


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the PostgreSQL that holds ``postgres_url``."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as p:
        yield p


@pytest.fixture
def servers(
    request: pytest.FixtureRequest, tmp_path: Path, artifacts: Artifacts
) -> Iterator[ServerPool]:
    """Starts `predictd serve` processes; kills leftovers, prints their logs on failure."""
    pool = ServerPool(tmp_path / "servers", artifacts.sentiment.path)
    pool.root.mkdir()
    try:
        yield pool
    finally:
        pool.close()
        report = request.node.stash.get(_REPORT_KEY, None)
        if report is not None and report.failed:
            print(f"\n===== predictd server logs =====\n{pool.report()}")
