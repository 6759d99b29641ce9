"""`predictd db ...` through Typer's runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from predictd.cli import app
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import audit_log, feedback, predictions
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    return db_url


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def seed_predictions(db_url: str, ages_days: list[float]) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    rows = [
        PredictionRecord(
            id=uuid.uuid4(), ts=now - timedelta(days=age), model_name="m", model_version=1,
            variant="production", request_id=None, batch_id=None, input={"text": "t"},
            output="x", confidence=0.5, probabilities=None, latency_ms=1.0, cache_hit=False,
            status="ok", error=None, client_ip=None, user_agent=None,
        )
        for age in ages_days
    ]  # fmt: skip

    async def write() -> None:
        db = Database(Settings(database_url=db_url).database)
        try:
            await PredictionWriter(db).write(rows)
        finally:
            await db.dispose()

    asyncio.run(write())
    return [row.id for row in rows]


def test_upgrade_current_history_downgrade(env: str) -> None:
    assert "upgraded to head" in invoke("db", "upgrade")
    head = migrate.head_revision()
    assert invoke("db", "current").strip() == head
    assert f"-> {head}" in invoke("db", "history")
    assert "downgraded to base" in invoke("db", "downgrade", "base")
    assert invoke("db", "current").strip() == "<base>"


def test_status_reports_counts_and_hides_password(env: str) -> None:
    invoke("db", "upgrade")
    seed_predictions(env, [0, 1])
    out = invoke("db", "status")
    assert "reachable: yes" in out
    assert f"{migrate.head_revision()} (up to date)" in out
    assert "predictions=2" in out
    assert "spool:" in out


def test_cleanup_deletes_only_old_rows(env: str) -> None:
    invoke("db", "upgrade")
    ids = seed_predictions(env, [0.1, 2, 10, 11, 40])
    seed_feedback(env, {ids[0]: 0.1, ids[1]: 9, ids[3]: 30})
    out = invoke("db", "cleanup", "--days", "7", "--inputs-days", "1")
    assert "deleted 3 prediction(s)" in out
    assert "blanked the input of 1 prediction(s) older than 1 day(s)" in out
    assert "deleted 2 feedback answer(s) older than 7 day(s)" in out  # 9 and 30 days old
    assert "predictions=2" in invoke("db", "status")
    assert stored_inputs(env) == {ids[0]: {"text": "t"}, ids[1]: None}
    bad = runner.invoke(app, ["db", "cleanup", "--days", "7", "--inputs-days", "8"])
    assert bad.exit_code == 1
    assert "--inputs-days must not exceed --days" in bad.output


def seed_feedback(db_url: str, ages_days: dict[uuid.UUID, float]) -> None:
    async def write() -> None:
        db = Database(Settings(database_url=db_url).database)
        now = datetime.now(UTC)
        try:
            async with db.engine.begin() as conn:
                await conn.execute(feedback.insert(), [
                    {"prediction_id": pid, "actual": "x", "revisions": 1,
                     "received_at": now - timedelta(days=age)}
                    for pid, age in ages_days.items()
                ])  # fmt: skip
        finally:
            await db.dispose()

    asyncio.run(write())


def stored_inputs(db_url: str) -> dict[uuid.UUID, object]:
    async def read() -> dict[uuid.UUID, object]:
        db = Database(Settings(database_url=db_url).database)
        try:
            async with db.engine.connect() as conn:
                rows = await conn.execute(select(predictions.c.id, predictions.c.input))
                return {row[0]: row[1] for row in rows}
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_backup(env: str, tmp_path: Path) -> None:
    invoke("db", "upgrade")
    out = invoke("db", "backup", str(tmp_path / "backup.out"))
    if env.startswith("sqlite"):
        assert (tmp_path / "backup.out").stat().st_size > 0
    else:
        assert "pg_dump" in out


def test_unreachable_database_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:hunter2@127.0.0.1:9/x")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 1
    assert "reachable: no" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_cleanup_purges_old_audit_rows_when_asked(env: str) -> None:
    invoke("db", "upgrade")
    now = datetime.now(UTC)

    async def seed_and_count(ages_days: list[float]) -> list[str]:
        db = Database(Settings(database_url=env).database)
        try:
            async with db.engine.begin() as conn:
                if ages_days:
                    await conn.execute(audit_log.insert(), [
                        {"ts": now - timedelta(days=age), "action": f"age {age}",
                         "allowed": True, "times": 1}
                        for age in ages_days
                    ])  # fmt: skip
                rows = await conn.execute(select(audit_log.c.action).order_by(audit_log.c.ts))
                return list(rows.scalars())
        finally:
            await db.dispose()

    asyncio.run(seed_and_count([1, 100, 400]))
    out = invoke("db", "cleanup", "--days", "7")
    assert "audit" not in out  # kept unless asked
    assert asyncio.run(seed_and_count([])) == ["age 400", "age 100", "age 1"]
    out = invoke("db", "cleanup", "--days", "7", "--audit-days", "90")
    assert "deleted 2 audit log row(s) older than 90 day(s)" in out
    assert asyncio.run(seed_and_count([])) == ["age 1"]
