"""The handlers against a real registry (SQLite and PostgreSQL), each run twice: the second
run finds its work done and changes nothing, which is what makes a takeover safe."""

from __future__ import annotations

from dataclasses import replace

from predictd.agent.actions import Action, ActionType
from predictd.agent.executor import Executor
from predictd.agent.service import ActionService
from predictd.demo.train import DemoModel
from predictd.registry.models import Stage
from predictd.registry.service import ModelRegistry
from tests.agent.conftest import Replicas, audit_rows, proposal, stored
from tests.conftest import Artifacts


async def two_versions(registry: ModelRegistry, artifacts: Artifacts) -> None:
    """sentiment v1 production, v2 (another training split) registered but not staged."""
    stages: tuple[tuple[DemoModel, Stage], ...] = (
        (artifacts.sentiment, "production"),
        (artifacts.sentiment_alt, "none"),
    )
    for model, stage in stages:
        candidate = registry.inspect(model.path, "sentiment", metrics=model.metrics)
        await registry.register(candidate, stage=stage, reuse=False)


async def run(
    executor: Executor, actions: ActionService, action_type: ActionType, version: int
) -> Action:
    action = await stored(actions, proposal(action_type, version=version, requires_approval=False))
    (done,) = await executor.run_once()
    assert done.id == action.id
    assert done.status == "succeeded", done.error
    assert done.result is not None
    return done


async def test_handlers_are_idempotent(
    actions: ActionService, replicas: Replicas, artifacts: Artifacts
) -> None:
    executor = replicas.executor()
    registry = executor.tools.registry
    await two_versions(registry, artifacts)

    async def stages() -> dict[int, str]:
        return {v.version: v.stage for v in await registry.list_versions("sentiment")}

    shadow = await run(executor, actions, "start_shadow", 2)
    assert shadow.result is not None
    assert (shadow.result["outcome"], shadow.result["shadowed"]) == ("staged", True)
    assert shadow.result["shadow_started_at"]
    again = await run(executor, actions, "start_shadow", 2)
    assert again.result is not None
    assert again.result["outcome"] == "already staging"
    assert await stages() == {1: "production", 2: "staging"}

    promoted = await run(executor, actions, "promote_candidate", 2)
    assert promoted.result == {"outcome": "promoted", "version": 2, "previous": 1}
    twice = await run(executor, actions, "promote_candidate", 2)
    assert twice.result == {"outcome": "already production", "version": 2}
    assert await stages() == {1: "archived", 2: "production"}

    rolled = await run(executor, actions, "rollback_model", 2)
    assert rolled.result == {"outcome": "rolled back", "bad_version": 2, "production": 1}
    again_rolled = await run(executor, actions, "rollback_model", 2)
    assert again_rolled.result == {
        "outcome": "already rolled back",
        "bad_version": 2,
        "production": 1,
    }
    assert (await stages())[1] == "production"

    # The registry's own audit rows name the action that made each change.
    changes = [
        r for r in await audit_rows(registry.db, "models.") if r["action"] != "models.register"
    ]
    assert [(r["action"], r["key_name"]) for r in changes] == [
        ("models.stage", f"agent:action:{shadow.id}"),
        ("models.promote", f"agent:action:{promoted.id}"),
        ("models.rollback", f"agent:action:{rolled.id}"),
    ]


async def test_shadowing_a_production_version_fails(
    actions: ActionService, replicas: Replicas, artifacts: Artifacts
) -> None:
    executor = replicas.executor()
    await two_versions(executor.tools.registry, artifacts)
    await stored(actions, proposal("start_shadow", version=1, requires_approval=False))
    (done,) = await executor.run_once()
    assert (done.status, done.error) == (
        "failed",
        "'sentiment' v1 is already production: nothing to shadow",
    )


async def test_promotion_fails_when_the_candidate_or_production_changed(
    actions: ActionService, replicas: Replicas, artifacts: Artifacts
) -> None:
    """An approval is for what was judged: an archived candidate is not promoted, nor one
    judged against a production version that has since been replaced."""
    executor = replicas.executor()
    registry = executor.tools.registry
    await two_versions(registry, artifacts)
    await stored(actions, proposal("promote_candidate", version=2, requires_approval=False))
    (unstaged,) = await executor.run_once()
    assert (unstaged.status, unstaged.error) == (
        "failed",
        "'sentiment' v2 is none, not staging: not promoted",
    )
    await registry.stage("sentiment", 2)
    judged = replace(
        proposal("promote_candidate", version=2, requires_approval=False),
        evidence={"production_version": 9},
    )
    await stored(actions, judged)
    (stale,) = await executor.run_once()
    assert stale.status == "failed"
    assert stale.error is not None
    assert "judged against production v9, but production is now v1" in stale.error
    assert {v.version: v.stage for v in await registry.list_versions("sentiment")} == {
        1: "production",
        2: "staging",
    }


async def test_retrain_parameters_are_read_as_the_policy_writes_them(
    actions: ActionService, replicas: Replicas, artifacts: Artifacts
) -> None:
    """``since`` arrives as "14d" (the policy's spelling) and reaches retraining as a span;
    a parameter the policy cannot write (base_data, hyperparameters) fails, named."""
    executor = replicas.executor()
    await two_versions(executor.tools.registry, artifacts)
    await stored(
        actions,
        proposal(
            "retrain_model",
            version=1,
            requires_approval=False,
            parameters={"since": "14d", "min_labelled": 5},
        ),
    )
    (read,) = await executor.run_once()
    assert read.status == "failed"  # no feedback at all: too few labelled rows, said so
    assert read.error is not None
    assert "labelled" in read.error
    assert "TypeError" not in read.error
    await stored(
        actions,
        proposal(
            "retrain_model", version=1, requires_approval=False, parameters={"base_data": False}
        ),
    )
    (refused,) = await executor.run_once()
    assert refused.status == "failed"
    assert refused.error is not None
    assert "retrain parameter base_data" in refused.error
