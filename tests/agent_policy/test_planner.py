"""plan() against a real database (SQLite and PostgreSQL) with real registered models: alerts
propose retraining, a candidate's holdout starts shadowing, its shadow answers propose
promotion, and a promoted version worse than its predecessor, re-scored for real, proposes a
rollback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score

from predictd.agent.actions import Proposal
from predictd.agent.planner import plan
from predictd.agent.policy import Policy, PromoteRule
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import agent_actions
from predictd.demo.train import load_sentiment_data
from predictd.inference.sklearn_runtime import load_estimator
from predictd.monitoring.alerts import AlertService, Changes, Finding
from predictd.monitoring.feedback import FeedbackItem, FeedbackService
from predictd.monitoring.monitor import MonitorResult
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.registry.models import ModelVersion, Stage
from predictd.registry.service import ModelRegistry
from predictd.settings import AgentSettings
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings

NAME = "sentiment"
TEXTS, LABELS = load_sentiment_data()
NOTHING = MonitorResult([], [], Changes([], []))


@dataclass
class World:
    db: Database
    registry: ModelRegistry
    policy: Policy = field(default_factory=Policy)

    async def plan(self, *, now: datetime | None = None, policy: Policy | None = None,
                   settings: AgentSettings | None = None,
                   result: MonitorResult = NOTHING) -> list[Proposal]:  # fmt: skip
        return await plan(self.db, self.registry, settings or AgentSettings(),
                          policy or self.policy, result, now or datetime.now(UTC))  # fmt: skip

    async def register(self, path: Path, stage: Stage, parent: int | None = None,
                       holdout: tuple[float, float] | None = None) -> ModelVersion:  # fmt: skip
        found = await asyncio.to_thread(self.registry.inspect, path, NAME, parent_version=parent)
        if holdout is not None:
            found = replace(found, training_run=training_run(parent, *holdout))
        return await self.registry.register(found, stage=stage)


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    await migrate.upgrade(db)
    yield World(db, ModelRegistry(settings.inference, db))
    await db.dispose()


def training_run(parent: int | None, candidate: float, production: float) -> dict[str, Any]:
    """As `predictd train` stores it (the shared contract)."""
    return {
        "parent_version": parent,
        "window": {"start": "2026-04-01T00:00:00+00:00", "end": "2026-05-01T00:00:00+00:00"},
        "rows": {"base": 288, "labelled": 400, "train": 608, "holdout": 80, "unusable_inputs": 0},
        "recent_weight": 5.0,
        "params": {"clf__C": 10.0},
        "holdout": {"candidate": {"accuracy": candidate}, "production": {"accuracy": production}},
        "validation": None,
    }


def predicted(path: Path, texts: Sequence[str]) -> list[str]:
    """The artifact's own answers, straight from scikit-learn."""
    return [str(label) for label in load_estimator(path).predict(list(texts))]


async def add_action(db: Database, action_type: str, version: int, status: str,
                     at: datetime) -> None:  # fmt: skip
    async with db.engine.begin() as conn:
        await conn.execute(agent_actions.insert().values(
            action_type=action_type, model_name=NAME, model_version=version, parameters={},
            reason="earlier proposal", risk="medium", requires_approval=True, status=status,
            requested_by="agent", created_at=at, updated_at=at,
        ))  # fmt: skip


async def store(db: Database, records: list[PredictionRecord], truth: dict[uuid.UUID, Any]) -> None:
    await PredictionWriter(db).write(records)
    await FeedbackService(db).submit([FeedbackItem(i, label) for i, label in truth.items()])


def drift_finding(version: int) -> Finding:
    data = {"version": version, "score": 1.0, "drifted_features": ["text_length"]}
    return Finding("drift", NAME, True, "warning", f"{NAME} v{version} input drift",
                   f"v{version}: 1 of 1 features drifted", data)  # fmt: skip


async def test_an_open_alert_proposes_retraining_until_a_candidate_is_judged(
    world: World, artifacts: Artifacts, weak_sentiment: Path
) -> None:
    await world.register(artifacts.sentiment.path, "production")
    latency = Finding("latency_p99", NAME, True, "warning", "slow", "p99 900 ms", {})
    changes = await AlertService(world.db).apply([drift_finding(1), latency])
    drift = next(a for a in changes.opened if a["rule"] == "drift")
    report = {"model_name": NAME, "model_version": 1, "status": "ok", "rows": 500, "score": 1.0,
              "drift_detected": True, "message": "1 of 1 features drifted"}  # fmt: skip
    now = datetime.now(UTC)

    latency_id = next(a["id"] for a in changes.opened if a["rule"] == "latency_p99")
    everything = await world.plan(now=now, result=MonitorResult([], [report], changes))
    # slow answers are not a reason to retrain: they open an incident instead
    assert [(p.action_type, p.model_version, p.source_alert_id) for p in everything] == [
        ("retrain_model", 1, drift["id"]),
        ("open_incident", 1, latency_id),
    ]
    # from here on, the retraining rule alone
    world.policy = Policy.model_validate({"open_incident": {"enabled": False}})
    found = everything[:1]
    assert found[0].evidence["alert"]["data"]["drifted_features"] == ["text_length"]
    assert found[0].evidence["drift"]["score"] == 1.0
    assert (found[0].risk, found[0].requires_approval) == ("medium", True)

    # Rejected an hour ago: the alert is still open (read from the database, not from this
    # pass's changes), but nobody is asked again before the cool-down is over.
    await add_action(world.db, "retrain_model", 1, "rejected", now - timedelta(hours=1))
    assert await world.plan(now=now) == []
    later = await world.plan(now=now + timedelta(hours=24))
    assert [(p.action_type, p.source_alert_id) for p in later] == [("retrain_model", drift["id"])]

    # A candidate made from v1 that beat it on its holdout is being judged: shadow it, and
    # do not retrain meanwhile.
    await world.register(weak_sentiment, "staging", parent=1, holdout=(0.93, 0.9))
    judged = await world.plan(now=now + timedelta(hours=24))
    assert [(p.action_type, p.model_version) for p in judged] == [("start_shadow", 2)]
    assert judged[0].evidence["holdout"] == {"candidate_accuracy": 0.93, "production_accuracy": 0.9}
    assert judged[0].requires_approval is False

    # A model without a production version gets nothing, alert or not.
    await AlertService(world.db).apply([replace(drift_finding(1), model="other")])
    other = await asyncio.to_thread(world.registry.inspect, artifacts.tabular.path, "other")
    await world.registry.register(other, stage="staging")
    assert {p.model_name for p in await world.plan(now=now + timedelta(hours=24))} == {NAME}


async def test_shadow_answers_with_feedback_propose_promotion(
    world: World, artifacts: Artifacts, weak_sentiment: Path
) -> None:
    production = await world.register(weak_sentiment, "production")
    candidate = await world.register(
        artifacts.sentiment.path, "staging", parent=production.version, holdout=(0.95, 0.55)
    )
    first = await world.plan()
    assert [(p.action_type, p.model_version) for p in first] == [("start_shadow", 2)]

    now = datetime.now(UTC)
    labels = LABELS[:240]
    weak, strong = predicted(weak_sentiment, TEXTS), predicted(artifacts.sentiment.path, TEXTS)
    records, truth = [], {}
    for i, text in enumerate(TEXTS[:300]):
        ts = now - timedelta(minutes=300 - i)
        answer = make_record(model_name=NAME, model_version=1, input={"text": text},
                             output=weak[i], ts=ts)  # fmt: skip
        shadow = make_record(model_name=NAME, model_version=2, variant="shadow",
                             input={"text": text}, output=strong[i], ts=ts,
                             shadow_of=answer.id)  # fmt: skip
        records += [answer, shadow]
        if i < 240:  # the last 60 requests have no feedback yet
            truth[answer.id] = LABELS[i]
    # Another version's shadow answers, with feedback, do not count for this candidate.
    for i in range(30):
        answer = make_record(model_name=NAME, model_version=1, output=weak[i], ts=now)
        records += [answer, make_record(model_name=NAME, model_version=9, variant="shadow",
                                        output=LABELS[i], ts=now, shadow_of=answer.id)]  # fmt: skip
        truth[answer.id] = "positive"
    await store(world.db, records, truth)

    found = await world.plan()
    assert [(p.action_type, p.model_version) for p in found] == [
        ("promote_candidate", candidate.version)
    ]
    evidence = found[0].evidence
    assert evidence["rows"] == 240
    assert evidence["candidate_accuracy"] == pytest.approx(accuracy_score(labels, strong[:240]))
    assert evidence["production_accuracy"] == pytest.approx(accuracy_score(labels, weak[:240]))
    agreement = sum(a == b for a, b in zip(weak[:240], strong[:240], strict=True)) / 240
    assert evidence["agreement"] == pytest.approx(agreement)
    assert evidence["candidate_accuracy"] > evidence["production_accuracy"] + 0.3
    assert (found[0].risk, found[0].requires_approval) == ("medium", True)

    # Fewer labelled rows than the policy asks for: keep shadowing.
    stricter = Policy(promote_candidate=PromoteRule(min_labelled=241))
    assert await world.plan(policy=stricter) == []
    # A person rejected this candidate: it is not proposed again.
    await add_action(world.db, "promote_candidate", 2, "rejected", now - timedelta(days=30))
    assert await world.plan() == []


async def test_a_promoted_version_worse_than_its_predecessor_proposes_rollback(
    world: World, artifacts: Artifacts, weak_sentiment: Path
) -> None:
    await world.register(artifacts.sentiment.path, "production")
    current = await world.register(weak_sentiment, "production", parent=1)
    assert current.promoted_at is not None
    promoted_at = current.promoted_at
    weak, strong = predicted(weak_sentiment, TEXTS), predicted(artifacts.sentiment.path, TEXTS)
    records, truth = [], {}
    answered = range(0, 360, 2)  # 180 labelled answers since the promotion, inputs stored
    for n, i in enumerate(answered):
        record = make_record(model_name=NAME, model_version=2, input={"text": TEXTS[i]},
                             output=weak[i], ts=promoted_at + timedelta(seconds=n + 1))  # fmt: skip
        records.append(record)
        truth[record.id] = LABELS[i]
    unusable = [{"hmac_sha256": "ab" * 32}] * 10 + [None] * 5
    for n, stored in enumerate(unusable):
        record = make_record(model_name=NAME, model_version=2, input=stored, output="positive",
                             ts=promoted_at + timedelta(seconds=n + 1))  # fmt: skip
        records.append(record)
        truth[record.id] = "negative"
    # Answers of v2 before its promotion (as a canary) are not "since its promotion".
    for i in range(1, 41, 2):
        record = make_record(model_name=NAME, model_version=2, variant="canary",
                             input={"text": TEXTS[i]}, output="positive",
                             ts=promoted_at - timedelta(hours=1))  # fmt: skip
        records.append(record)
        truth[record.id] = LABELS[i]
    await store(world.db, records, truth)
    await AlertService(world.db).apply([
        Finding("accuracy", NAME, True, "critical", f"{NAME} v2 accuracy 0.5", "low",
                {"version": 2, "accuracy": 0.5}),
    ])  # fmt: skip

    found = await world.plan()
    # Rolling back answers the accuracy alert: no retraining of the bad version as well.
    assert [(p.action_type, p.model_version) for p in found] == [("rollback_model", 2)]
    proposal = found[0]
    labels = [LABELS[i] for i in answered]
    evidence = proposal.evidence
    assert (evidence["rows"], evidence["unusable_rows"]) == (180, 15)
    assert evidence["accuracy"] == pytest.approx(
        accuracy_score(labels, [weak[i] for i in answered])
    )
    assert evidence["previous_accuracy"] == pytest.approx(
        accuracy_score(labels, [strong[i] for i in answered])
    )
    assert evidence["previous_accuracy"] > evidence["accuracy"] + 0.3
    assert (proposal.risk, proposal.requires_approval) == ("high", True)
    assert proposal.parameters == {"to_version": 1}

    auto = await world.plan(settings=AgentSettings(auto_rollback=True))
    assert [p.requires_approval for p in auto] == [False]
    # A predecessor whose artifact no longer matches the registry is not re-scored (nor
    # rolled back to); the alert is then answered by retraining.
    previous = await world.registry.get(NAME, 1)
    artifact = world.registry.store.local_path(previous.artifact_uri)
    original = artifact.read_bytes()
    artifact.write_bytes(original + b"tampered")
    tampered = await world.plan()
    assert [(p.action_type, p.model_version) for p in tampered] == [("retrain_model", 2)]
    artifact.write_bytes(original)
    # Past the rollback window the alert is answered by retraining instead; with the agent
    # off, nothing at all.
    later = await world.plan(now=datetime.now(UTC) + timedelta(days=8))
    assert [(p.action_type, p.model_version) for p in later] == [("retrain_model", 2)]
    assert await world.plan(settings=AgentSettings(enabled=False)) == []
