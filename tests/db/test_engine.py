"""What users type as DATABASE_URL, and what is safe to print."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictd.db.engine import to_async_url, to_display_url
from predictd.settings import Settings


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
        ("sqlite:///./predictd.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
    ],
)
def test_plain_urls_get_the_async_driver(raw: str, driver: str) -> None:
    assert to_async_url(raw).drivername == driver


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        to_async_url("mysql://u@h/db")


def test_display_url_hides_the_password() -> None:
    shown = to_display_url("postgresql://app:s3cret@db:5432/predictd")
    assert "s3cret" not in shown
    assert shown == "postgresql://app:***@db:5432/predictd"


def test_database_url_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert Settings().database.url == "postgresql://u@h/db"
    assert Settings().database.migrate_on_startup is False
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert Settings().database.migrate_on_startup is True
    monkeypatch.setenv("PREDICTD_AUTO_MIGRATE", "false")
    assert Settings().database.migrate_on_startup is False


def test_secrets_are_read_from_mounted_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text("postgresql://app:pw@db/predictd")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PREDICTD_SECRETS_DIR", str(secrets))
    assert Settings().database.url == "postgresql://app:pw@db/predictd"


async def test_api_reads_are_planned_for_their_own_dates(postgres_url: str) -> None:
    """Windowed analytics must not run on a cached generic plan (part D: twice the time);
    the recorder's pool keeps PostgreSQL's default."""
    from sqlalchemy import text

    from predictd.db.engine import Database

    db = Database(Settings(database_url=postgres_url).database)
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar() == (
                "force_custom_plan"
            )
        async with db.writer_engine.connect() as conn:
            assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar() == "auto"
    finally:
        await db.dispose()
