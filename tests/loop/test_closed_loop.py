"""The loop closed end to end, on PostgreSQL with two real `predictd serve` replicas: a concept
shift (inputs move, true labels follow a new rule) raises drift and accuracy alerts; the agent
proposes a retrain; approving it trains a candidate, executed once although both replicas race
for it; the candidate is shadowed, promotion is proposed from its shadow accuracy on labelled
traffic and approved; the replicas serve it, and realised accuracy on the shifted stream
wins back at least 80 % of what the shift cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.retrain_recovery import (
    MODEL,
    Scenario,
    StreamRow,
    base_training_set,
    recovery,
    shifted_stream,
    write_artifacts,
)
from sqlalchemy import func, select

from predictd.access.keys import KeyService
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import predictions
from predictd.settings import Settings
from tests.retraining.conftest import Answer, Cli, predict, send_feedback, wait_recorded
from tests.support.server import ServerPool, ServerProcess, wait_for

pytestmark = pytest.mark.slow

KEYS = {"operator": ["admin"], "approver": ["approve", "read"], "sender": ["predict", "read"]}
SCENARIO = Scenario(seed=0, before=500, after=2000, feedback=0.25)


def accuracy(answers: Sequence[Answer], rows: Sequence[StreamRow]) -> float:
    """Realised accuracy of what the servers answered, against the stream's true labels."""
    right = sum(str(a.prediction) == str(r.label) for a, r in zip(answers, rows, strict=True))
    return right / len(rows)


async def create_keys(url: str) -> dict[str, dict[str, str]]:
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        await migrate.upgrade(db)
        service = KeyService(db)
        headers = {}
        for name, scopes in KEYS.items():
            key, _ = await service.create(name, scopes)  # type: ignore[arg-type]
            headers[name] = {"authorization": f"Bearer {key}"}
        return headers
    finally:
        await db.dispose()


def shadow_rows(url: str, version: int) -> int:
    async def count() -> int:
        db = Database(Settings(_env_file=None, database_url=url).database)
        try:
            async with db.engine.connect() as conn:
                query = select(func.count()).where(
                    predictions.c.model_name == MODEL,
                    predictions.c.model_version == version,
                    predictions.c.variant == "shadow",
                )
                return int((await conn.execute(query)).scalar_one())
        finally:
            await db.dispose()

    return asyncio.run(count())


class Loop:
    """The operator's side: traffic, feedback, monitor passes and decisions."""

    def __init__(
        self, replicas: list[ServerProcess], keys: dict[str, dict[str, str]], url: str, cli: Cli
    ) -> None:
        self.replicas, self.keys, self.url, self.cli = replicas, keys, url, cli
        self.turn = 0

    def client(self, key: str) -> httpx.Client:
        """The next replica in turn, so both answer traffic and decisions."""
        self.turn += 1
        server = self.replicas[self.turn % len(self.replicas)]
        return httpx.Client(base_url=server.base_url, headers=self.keys[key], timeout=30)

    def send(self, rows: Sequence[StreamRow]) -> list[Answer]:
        """The rows as traffic, split over both replicas, then the labels of the labelled
        ones as feedback; returns once every prediction is recorded."""
        half = len(rows) // 2
        answers = []
        for part in (rows[:half], rows[half:]):
            with self.client("sender") as client:
                answers += predict(client, part)
        wait_recorded(self.url, answers, timeout_s=60)
        labels = [(a.prediction_id, r.label) for a, r in zip(answers, rows, strict=True)
                  if r.labelled]  # fmt: skip
        with self.client("sender") as client:
            send_feedback(client, labels)
        return answers

    def monitor(self) -> list[dict[str, Any]]:
        """One monitor pass (then the agent's planning); the lines it printed."""
        out, _ = self.cli("monitor", "run", "--window", "1h", "--model", MODEL)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def pending(self, action_type: str) -> dict[str, Any]:
        with self.client("approver") as client:
            listed = client.get("/actions", params={"status": "pending"})
        assert listed.status_code == 200, listed.text
        found: list[dict[str, Any]] = [
            a for a in listed.json()["actions"] if a["action_type"] == action_type
        ]
        assert len(found) == 1, listed.json()
        return found[0]

    def approve(self, action_id: int, comment: str) -> None:
        with self.client("approver") as client:
            response = client.post(f"/actions/{action_id}/approve", json={"comment": comment})
        assert response.status_code == 200, response.text

    def finished(self, action_id: int, timeout_s: float = 120) -> dict[str, Any]:
        """The action once an executor has finished it (the replicas poll for approved ones)."""
        state: dict[str, Any] = {}

        def done() -> bool:
            with self.client("approver") as client:
                state.update(client.get(f"/actions/{action_id}").json())
            return state["status"] not in ("approved", "running")

        wait_for(done, timeout_s, f"action {action_id} executed")
        assert state["status"] == "succeeded", state
        return state

    def served(self) -> list[dict[str, Any]]:
        """What each replica serves of the model, after it reloaded from the registry."""
        served = []
        for server in self.replicas:
            with httpx.Client(base_url=server.base_url, headers=self.keys["operator"]) as client:
                reloaded = client.post("/models/reload", timeout=60)
            assert reloaded.status_code == 200, reloaded.text
            served.append(reloaded.json()["served"][MODEL])
        return served


def test_shift_alert_retrain_shadow_promote_recovers(
    servers: ServerPool,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "DATABASE_URL": postgres_url,
        "PREDICTD_ARTIFACT_DIR": str(servers.root / "artifacts"),
        "PREDICTD_ALERT_ACCURACY_MIN": "0.8",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    cli = Cli()
    keys = asyncio.run(create_keys(postgres_url))

    artifact, training = write_artifacts(SCENARIO, tmp_path / "model")
    validation = tmp_path / "validation.jsonl"
    rows = base_training_set(Scenario(seed=99, base_rows=500))
    validation.write_text("".join(json.dumps({"features": f, "label": y}) + "\n" for f, y in rows))
    cli("models", "register", str(artifact), "--name", MODEL, "--stage", "production",
        "--training-data", str(training), "--validation", str(validation))  # fmt: skip

    replica_env = {
        "PREDICTD_AUTH": "on",
        "PREDICTD_SHADOW": "true",
        "PREDICTD_AGENT_EXECUTE_INTERVAL_S": "0.2",
        "PREDICTD_REGISTRY_POLL_S": "0.5",
        "PREDICTD_ALERT_ACCURACY_MIN": "0.8",
    }
    replicas = [
        servers.start(postgres_url, spool_dir=tmp_path / f"spool{i}", env=replica_env, model=None)
        for i in range(2)
    ]
    loop = Loop(replicas, keys, postgres_url, cli)

    stream = shifted_stream(SCENARIO)
    before = accuracy(loop.send(stream[: SCENARIO.before]), stream[: SCENARIO.before])
    shifted_rows = stream[SCENARIO.before :]
    after = accuracy(loop.send(shifted_rows), shifted_rows)

    # The monitor sees it: drift in the inputs, accuracy under the floor; the agent proposes.
    lines = loop.monitor()
    opened = {line["rule"] for line in lines if line.get("alert") == "opened"}
    assert {"drift", "accuracy"} <= opened, lines
    retrain = loop.pending("retrain_model")
    assert retrain["risk"] == "medium"
    assert retrain["requires_approval"] is True
    assert retrain["requested_by"] == "agent"

    # Approved once, executed once, although both replicas' executors look for it.
    loop.approve(retrain["id"], "labels changed after the shift: retrain")
    trained = loop.finished(retrain["id"], timeout_s=180)
    assert trained["attempts"] == 1, trained
    candidate = int(trained["result"]["version"])
    with loop.client("approver") as client:
        versions = client.get(f"/models/{MODEL}/versions").json()["versions"]
    assert [(v["version"], v["stage"]) for v in versions] == [(1, "production"), (2, "none")]
    assert candidate == 2
    assert versions[1]["parent_version"] == 1
    assert versions[1]["tags"]["agent_action"] == str(retrain["id"])  # a retry finds it
    holdout = versions[1]["training_run"]["holdout"]
    assert holdout["candidate"]["accuracy"] > holdout["production"]["accuracy"], holdout

    # The candidate beats production on the holdout: the agent shadows it (low risk, no
    # approval), and the replicas answer with production while the candidate runs beside it.
    proposed = [line["proposed"] for line in loop.monitor() if "proposed" in line]
    assert [(p["action_type"], p["model_version"]) for p in proposed] == [("start_shadow", 2)]
    assert proposed[0]["requires_approval"] is False
    assert proposed[0]["risk"] == "low"
    shadowed = loop.finished(proposed[0]["id"])
    assert shadowed["reviewed_by"] == "agent:auto"
    assert shadowed["attempts"] == 1
    assert all(s == {"production": 1, "candidate": 2} for s in loop.served())

    evaluation = shifted_stream(Scenario(seed=1, before=0, after=1200, feedback=0.25))
    loop.send(evaluation)
    wait_for(lambda: shadow_rows(postgres_url, 2) >= len(evaluation), 60, "shadow answers kept")

    # Enough labelled shadow answers: promotion is proposed with its evidence, and approved.
    loop.monitor()
    promote = loop.pending("promote_candidate")
    assert promote["model_version"] == 2
    assert promote["requires_approval"] is True
    loop.approve(promote["id"], "shadow accuracy holds")
    promoted = loop.finished(promote["id"])
    assert promoted["attempts"] == 1
    assert all(s["production"] == 2 for s in loop.served())

    final_rows = shifted_stream(Scenario(seed=2, before=0, after=1000, feedback=0.0))
    answers = loop.send(final_rows)
    assert all(a.prediction is not None for a in answers)
    recovered = accuracy(answers, final_rows)
    share = recovery(before, after, recovered)
    with capsys.disabled():
        print(
            f"\nclosed loop: accuracy before the shift {before:.3f}, after it {after:.3f}, "
            f"after promotion {recovered:.3f}: {share:.0%} of the loss recovered; "
            f"shadow evidence {promote['evidence']}"
        )
    assert after < before - 0.2, (before, after)
    assert share >= 0.8, (before, after, recovered)
