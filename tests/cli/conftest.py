"""What the registry commands' tests share: a database, auto-migration and an artifact store
of their own, run from the test's directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """SQLite, then a fresh PostgreSQL database (``db_url``); modules with other needs
    define their own ``env``."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_AUTO_MIGRATE", "true")
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.chdir(tmp_path)
    return db_url
