"""Shared fixtures: tiny real models, a real PostgreSQL database per session, settings."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.demo.train import DemoModel, train_sentiment, train_tabular
from predictd.settings import Settings
from tests.registry.mlflow_models import MlflowModels, write_models
from tests.support import services
from tests.support.server import ServerPool


@dataclass(frozen=True)
class Artifacts:
    sentiment: DemoModel
    sentiment_alt: DemoModel  # the same pipeline trained on another split: a real candidate
    tabular: DemoModel


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    out = tmp_path_factory.mktemp("models")
    return Artifacts(
        train_sentiment(out / "text"),
        train_sentiment(out / "text-alt", seed=1),
        train_tabular(out / "tabular"),
    )


@pytest.fixture(scope="session")
def transformer_export(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    """The transformer demo: a directory in the layout `optimum-cli export onnx` writes."""
    from predictd.demo.transformer import train_transformer

    return train_transformer(tmp_path_factory.mktemp("transformer"))


@pytest.fixture(scope="session")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> MlflowModels:
    """MLflow sklearn models saved and logged by MLflow itself, to a local file store."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores opt-in
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        return write_models(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL, or skip/fail per PREDICTD_REQUIRE_SERVICES."""
    if not services.postgres_available():
        services.unavailable(f"PostgreSQL at {services.ADMIN_URL}")
    return services.ADMIN_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database (15), emptied before and after a test."""
    import redis

    if not services.redis_available():
        services.unavailable(f"Redis at {services.REDIS_URL}")
    client = redis.Redis.from_url(services.REDIS_URL)
    client.flushdb()
    try:
        yield services.REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    url = services.create_database()
    yield url
    services.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictd.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A migrated database (SQLite, then a fresh PostgreSQL one) with its engine."""
    database = Database(Settings(database_url=db_url).database)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run server processes first: they take most of the suite's time, so the
    parallel workers (pytest-xdist) start on them together and finish on the short ones."""

    def runs_servers(item: pytest.Item) -> bool:
        fixtures = getattr(item, "fixturenames", ())
        return "servers" in fixtures or item.get_closest_marker("slow") is not None

    items.sort(key=lambda item: not runs_servers(item))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter,
) -> Generator[None, None, None]:
    """One loud line when tests were skipped for want of PostgreSQL, Redis or another service,
    so a laptop run that skipped them is never mistaken for a full one. The outermost wrapper,
    so it comes after the short summary, just above the final counts; under pytest-xdist it
    runs in the controller, which holds every worker's reports."""
    yield
    missing: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        reason = str(reason).removeprefix("Skipped: ")
        if reason.startswith(services.SKIP_PREFIX):
            missing[reason.removeprefix(services.SKIP_PREFIX)] += 1
    if missing:
        why = "; ".join(f"{what} ({n})" for what, n in missing.most_common())
        terminalreporter.write_sep(
            "!",
            f"{missing.total()} tests SKIPPED, services unavailable: {why}. Start them "
            "(scripts/ensure_services.sh) or run with PREDICTD_REQUIRE_SERVICES=1 to fail",
            red=True,
            bold=True,
        )
