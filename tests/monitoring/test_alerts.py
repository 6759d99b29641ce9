"""Alerts: rules, one open alert per rule and model, auto-resolve, the webhook with retries
(a real HTTP server on 127.0.0.1), the Prometheus gauge, the API and the CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from predictd.cli import app as cli
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.monitoring.alerts import AlertService, Finding, serving_findings
from predictd.monitoring.feedback import FeedbackItem, FeedbackService
from predictd.monitoring.monitor import exclusive_pass, run_monitor
from predictd.monitoring.recording_health import RecordingCondition
from predictd.observability import Metrics
from predictd.recording.recorder import RecorderState
from predictd.recording.repository import PredictionWriter
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, running_app, wait_shipped
from tests.support.webhook import WebhookSink, webhook_sink


def slow(firing: bool) -> Finding:
    return Finding("latency_p99", "m", firing, "warning", "slow", f"firing={firing}", {"n": 1})


async def test_one_open_alert_per_rule_and_model(db: Database) -> None:
    service = AlertService(db)
    first = await service.apply([slow(True)])
    assert len(first.opened) == 1
    alert_id = first.opened[0]["id"]
    again = await service.apply([slow(True), replace(slow(True), model="other")])
    assert [a["model_name"] for a in again.opened] == ["other"]  # no duplicate for "m"
    await service.acknowledge(alert_id, "ops")
    still = await service.apply([slow(True)])
    assert still.opened == []
    assert (await service.list("open"))[-1]["status"] == "acknowledged"

    cleared = await service.apply([slow(False)])
    assert [a["id"] for a in cleared.resolved] == [alert_id]
    done = next(a for a in await service.list("resolved") if a["id"] == alert_id)
    assert done["resolved_by"] == "predictd"
    assert done["resolution_notes"].startswith("condition cleared")
    back = await service.apply([slow(True)])
    assert len(back.opened) == 1
    assert back.opened[0]["id"] != alert_id


def test_serving_rules_wait_for_enough_traffic() -> None:
    settings = Settings(alert_p99_latency_ms=100, alert_error_rate=0.1, alert_min_predictions=50)
    quiet = {"total": 10, "errors": 9, "p99_latency_ms": 900.0}
    assert serving_findings("m", quiet, settings.alerts) == []
    busy = {"total": 100, "errors": 5, "p99_latency_ms": 150.0}
    found = {f.rule: f.firing for f in serving_findings("m", busy, settings.alerts)}
    assert found == {"latency_p99": True, "error_rate": False}


def recorder(backlog: int, database_ok: bool | None) -> RecorderState:
    return RecorderState(0, 0, backlog, 0, database_ok, None if database_ok else "refused")


def test_the_recording_condition_needs_to_last() -> None:
    condition = RecordingCondition(limit_s=10)
    assert condition.observe(recorder(5, False), now=0)[0] is False
    assert condition.observe(recorder(9, False), now=9)[0] is False
    firing, message = condition.observe(recorder(12, False), now=10)
    assert firing
    assert "unreachable for 10 s" in message
    assert condition.observe(recorder(11, True), now=11)[0] is False  # back, draining
    for t in range(12, 22):  # reachable, but the backlog keeps growing
        assert condition.observe(recorder(100 + t, True), now=t)[0] is False
    assert condition.observe(recorder(200, True), now=22)[0] is True
    assert condition.observe(recorder(150, True), now=23)[0] is False


def test_a_database_failing_when_the_alert_opens_is_named_as_its_cause() -> None:
    """The backlog starts growing a moment before the first write fails, so its clock runs
    out first; the message must still say the database is unreachable."""
    condition = RecordingCondition(limit_s=1)
    assert condition.observe(recorder(5, True), now=0.0)[0] is False  # growing, not failing
    assert condition.observe(recorder(9, False), now=0.3)[0] is False  # first write failed
    firing, message = condition.observe(recorder(25, False), now=1.0)
    assert firing
    assert "unreachable" in message
    assert "not keeping up" not in message


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    with webhook_sink(failures=1) as sink:  # the first POST fails: the sender must retry
        yield sink


async def test_monitor_raises_and_clears_alerts(
    tmp_path: Path, db_url: str, artifacts: Artifacts, webhook: WebhookSink
) -> None:
    settings = make_settings(
        tmp_path, db_url, alert_webhook_url=webhook.url, alert_min_predictions=20
    )
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        version = registry.inspect(artifacts.sentiment.path, "clf", metrics={"accuracy": 0.95})
        await registry.register(version, stage="production")
        now = datetime.now(UTC)
        ok = [make_record(id=uuid.uuid4(), model_name="clf", output="positive",
                          ts=now - timedelta(minutes=5)) for _ in range(30)]  # fmt: skip
        failed = [make_record(id=uuid.uuid4(), model_name="clf", status="error", output=None,
                              confidence=None, ts=now - timedelta(minutes=5))
                  for _ in range(10)]  # fmt: skip
        await PredictionWriter(db).write(ok + failed)
        await FeedbackService(db).submit([FeedbackItem(r.id, "negative") for r in ok[:20]])

        metrics = Metrics.create()
        result = await run_monitor(
            db, settings.monitoring, settings.alerts, timedelta(hours=1), metrics=metrics
        )
        assert sorted(a["rule"] for a in result.alerts.opened) == ["accuracy", "error_rate"]
        sample = metrics.registry.get_sample_value
        assert sample("predictd_alerts_active", {"rule": "error_rate", "severity": "critical"}) == 1
        assert webhook.events() == ["opened", "opened"]  # after one retry

        # The same conditions again: nothing new. Then the errors stop and labels improve.
        again = await run_monitor(
            db, settings.monitoring, settings.alerts, timedelta(hours=1), metrics=metrics
        )
        assert again.alerts.opened == []
        fresh = [make_record(id=uuid.uuid4(), model_name="clf", output="positive",
                             ts=now - timedelta(minutes=2)) for _ in range(400)]  # fmt: skip
        await PredictionWriter(db).write(fresh)
        await FeedbackService(db).submit([FeedbackItem(r.id, "positive") for r in ok + fresh])
        cleared = await run_monitor(
            db, settings.monitoring, settings.alerts, timedelta(hours=1), metrics=metrics
        )
        assert sorted(a["rule"] for a in cleared.alerts.resolved) == ["accuracy", "error_rate"]
        assert (
            sample("predictd_alerts_active", {"rule": "error_rate", "severity": "critical"}) is None
        )
        assert webhook.events()[-2:] == ["resolved", "resolved"]
    finally:
        await db.dispose()


async def test_alerts_over_http(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, admin_token="s3cret")
    async with running_app(settings) as (app, client):
        service = AlertService(app.state.services.db)
        first, second = (await service.apply([slow(True), replace(slow(True), model="n")])).opened
        admin = {"Authorization": "Bearer s3cret"}

        listed = (await client.get("/alerts", params={"status": "active"})).json()
        assert {a["id"] for a in listed["items"]} == {first["id"], second["id"]}
        path = f"/alerts/{first['id']}"
        assert (await client.post(f"{path}/acknowledge")).status_code == 401
        acked = await client.post(f"{path}/acknowledge", json={"by": "kim"}, headers=admin)
        assert acked.json()["acknowledged_by"] == "kim"
        twice = await client.post(f"{path}/acknowledge", headers=admin)
        assert twice.status_code == 409
        done = await client.post(f"{path}/resolve", json={"notes": "scaled up"}, headers=admin)
        assert (done.json()["status"], done.json()["resolution_notes"]) == ("resolved", "scaled up")
        assert done.json()["resolved_by"] == "admin-token"  # who, when the body does not say
        assert (await client.post(f"{path}/resolve", headers=admin)).status_code == 409
        assert (await client.post("/alerts/9999/resolve", headers=admin)).status_code == 404
        bad = await client.get("/alerts", params={"status": "sleeping"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "status"


def test_alerts_from_the_cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def seed() -> dict[str, Any]:
        database = Database(Settings(database_url=db_url).database)
        try:
            await migrate.upgrade(database)
            return (await AlertService(database).apply([slow(True)])).opened[0]
        finally:
            await database.dispose()

    second = asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    listed_cli = runner.invoke(cli, ["alerts", "list", "--status", "open"])
    assert listed_cli.exit_code == 0, listed_cli.output
    assert [json.loads(line)["id"] for line in listed_cli.output.splitlines()] == [second["id"]]
    ack = runner.invoke(cli, ["alerts", "ack", str(second["id"]), "--by", "lee"])
    assert ack.exit_code == 0, ack.output
    assert "acknowledged by lee" in ack.output
    resolved = runner.invoke(cli, ["alerts", "resolve", str(second["id"]), "--notes", "ok"])
    assert resolved.exit_code == 0, resolved.output
    missing = runner.invoke(cli, ["alerts", "ack", "9999"])
    assert missing.exit_code == 1
    assert "no alert 9999" in missing.output


async def test_one_replica_runs_each_monitor_pass(postgres_url: str) -> None:
    first, second = (Database(Settings(database_url=postgres_url).database) for _ in range(2))
    try:
        async with exclusive_pass(first) as mine:
            assert mine
            async with exclusive_pass(second) as theirs:
                assert not theirs
        async with exclusive_pass(second) as theirs:
            assert theirs
    finally:
        await first.dispose()
        await second.dispose()


async def test_the_server_runs_the_monitor_on_schedule(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(
        tmp_path, db_url, model_path=artifacts.sentiment.path, monitor_interval_s=0.2
    )
    async with running_app(settings) as (app, client):
        answer = (await client.post("/predict", json={"text": "I love it"})).json()
        await wait_shipped(app)
        await client.post(
            "/feedback", json={"prediction_id": answer["prediction_id"], "actual": "positive"}
        )
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            rows = (await client.get("/analytics/performance")).json()["items"]
            if rows and rows[0]["labelled"] == 1:
                break
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.1)
        assert rows[0]["model_name"] == "sentiment"
        assert rows[0]["metrics"]["accuracy"] == (
            1.0 if answer["prediction"] == "positive" else 0.0
        )


async def test_a_webhook_that_stays_down_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from predictd.monitoring.alerts import Changes, Webhook

    with webhook_sink(failures=100) as sink:  # every attempt answers 503
        sent = await Webhook(sink.url).send(Changes([{"id": 1, "rule": "x"}], []))
    assert sent == 0
    assert sink.failures_left == 100 - Webhook.ATTEMPTS
    assert "alert webhook failed" in caplog.text
