"""The rules over plain values: each fires, and each stays quiet when the action would be
pointless, below a threshold or margin, or asked again within its cool-down."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from predictd.agent import rules
from predictd.agent.policy import Policy, RetrainRule, RollbackRule, resolve
from predictd.agent.rules import ModelState, OpenAlert, PastAction, Rescore, ShadowScore
from predictd.registry.models import ModelVersion, Stage
from predictd.settings import AgentSettings

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
POLICY = Policy()


def version(
    number: int, stage: Stage = "production", *, parent: int | None = None,
    holdout: tuple[float, float] | None = None, promoted_days_ago: float | None = None,
    task: str = "classification",
) -> ModelVersion:  # fmt: skip
    run = None
    if holdout is not None:
        run = {"parent_version": parent, "window": {"start": "a", "end": "b"},
               "rows": {"train": 400, "holdout": 100},
               "holdout": {"candidate": {"accuracy": holdout[0]},
                           "production": {"accuracy": holdout[1]}}}  # fmt: skip
    promoted = None if promoted_days_ago is None else NOW - timedelta(days=promoted_days_ago)
    return ModelVersion(
        name="m", version=number, flavor="skops", task=task,  # type: ignore[arg-type]
        input_kind="text", artifact_uri="x", artifact_sha256="0" * 64, stage=stage,
        created_at=NOW - timedelta(days=30), promoted_at=promoted, parent_version=parent,
        training_run=run,
    )  # fmt: skip


def alert(rule: str = "drift", severity: str = "warning", id: int = 7, **data: Any) -> OpenAlert:
    return OpenAlert(id, rule, "m", severity, f"m v1 {rule}", {"version": 1, **data},
                     NOW - timedelta(hours=3))  # fmt: skip


def action(kind: str, status: str, hours_ago: float = 1, version: int | None = None,
           result: dict[str, Any] | None = None) -> PastAction:  # fmt: skip
    return PastAction(kind, version, status, NOW - timedelta(hours=hours_ago), result)


PRODUCTION = version(1, promoted_days_ago=20)
STATE = ModelState(production=PRODUCTION, alerts=(alert(),))


# -- retrain ----------------------------------------------------------------------------


def test_an_open_alert_proposes_retraining() -> None:
    state = replace(
        STATE,
        performance={"model_name": "m", "model_version": 1, "predictions": 900, "labelled": 300,
                     "metrics": {"accuracy": 0.7, "confusion": {"labels": []}}},
        drift={"model_version": 1, "status": "ok", "score": 0.8, "drift_detected": True,
               "rows": 900, "message": "2 of 2 features drifted"},
    )  # fmt: skip
    found = rules.retrain(state, POLICY, NOW)
    assert found is not None
    assert (found.action_type, found.model_name, found.model_version) == ("retrain_model", "m", 1)
    assert (found.risk, found.requires_approval, found.source_alert_id) == ("medium", True, 7)
    assert found.evidence["alert"] == {
        "id": 7, "rule": "drift", "severity": "warning", "title": "m v1 drift",
        "data": {"version": 1}, "created_at": (NOW - timedelta(hours=3)).isoformat(),
    }  # fmt: skip
    assert found.evidence["performance"]["metrics"] == {"accuracy": 0.7}
    assert found.evidence["drift"]["score"] == 0.8
    assert "alert #7" in found.reason
    assert "from v1" in found.reason
    assert found.parameters == {}


def test_the_most_severe_alert_is_the_source() -> None:
    state = replace(STATE, alerts=(alert(), alert("accuracy", "critical", id=9, accuracy=0.6)))
    found = rules.retrain(state, POLICY, NOW)
    assert found is not None
    assert found.source_alert_id == 9
    assert [a["id"] for a in found.evidence["other_alerts"]] == [7]


@pytest.mark.parametrize(
    ("alerts", "rule"),
    [
        ((alert("latency_p99"),), RetrainRule()),  # not a retrain rule by default
        ((alert(version=2),), RetrainRule()),  # about another version (a canary)
        ((), RetrainRule()),
        ((alert(),), RetrainRule(enabled=False)),
        ((alert(),), RetrainRule(alert_rules=["accuracy"])),
    ],
)
def test_no_retraining_without_a_matching_alert(
    alerts: tuple[OpenAlert, ...], rule: RetrainRule
) -> None:
    assert rules.retrain(replace(STATE, alerts=alerts), Policy(retrain_model=rule), NOW) is None


def test_the_policy_chooses_which_alerts_retrain() -> None:
    state = replace(STATE, alerts=(alert("error_rate"),))
    policy = Policy(retrain_model=RetrainRule(alert_rules=["error_rate"], risk="high"))
    found = rules.retrain(state, policy, NOW)
    assert found is not None
    assert found.risk == "high"


@pytest.mark.parametrize(
    ("past", "proposed"),
    [
        (action("retrain_model", "pending"), False),  # one open at a time
        (action("retrain_model", "rejected", hours_ago=2), False),  # cool-down
        (action("retrain_model", "failed", hours_ago=2), False),
        (action("retrain_model", "succeeded", hours_ago=2), False),
        (action("retrain_model", "rejected", hours_ago=25), True),  # cool-down over
        (action("retrain_model", "expired", hours_ago=0.1), True),  # nobody decided
        (action("rollback_model", "approved", version=1), False),  # rolling back is the fix
        (action("promote_candidate", "rejected", hours_ago=0.1, version=1), True),
    ],
)
def test_retraining_waits_for_open_and_recent_decisions(past: PastAction, proposed: bool) -> None:
    found = rules.retrain(replace(STATE, actions=(past,)), POLICY, NOW)
    assert (found is not None) is proposed


def test_the_cool_down_comes_from_the_policy() -> None:
    state = replace(STATE, actions=(action("retrain_model", "rejected", hours_ago=2),))
    short = Policy(retrain_model=RetrainRule(cooldown=timedelta(hours=1)))
    assert rules.retrain(state, short, NOW) is not None


@pytest.mark.parametrize(
    ("candidate", "actions", "shadow", "proposed"),
    [
        (version(2, "staging", parent=1, holdout=(0.9, 0.8)), (), None, False),  # being judged
        (version(2, "staging", parent=1), (), None, False),  # no holdout: judged by people
        (version(2, "staging", parent=1, holdout=(0.8, 0.8)), (), None, True),  # lost holdout
        (version(2, "staging", parent=0, holdout=(0.9, 0.8)), (), None, True),  # stale parent
        (version(2, "staging", parent=1, holdout=(0.9, 0.8)),
         (action("start_shadow", "rejected", hours_ago=0.1, version=2),), None, True),
        (version(2, "staging", parent=1, holdout=(0.9, 0.8)), (),
         ShadowScore(200, 150, 170, 180), True),  # lost in shadow
        (version(2, "staging", parent=1, holdout=(0.9, 0.8)), (),
         ShadowScore(50, 10, 40, 20), False),  # too few rows to say it lost
    ],
)  # fmt: skip
def test_no_retraining_while_a_candidate_is_judged(
    candidate: ModelVersion, actions: tuple[PastAction, ...], shadow: ShadowScore | None,
    proposed: bool,
) -> None:  # fmt: skip
    state = replace(STATE, candidate=candidate, actions=actions)
    assert (rules.retrain(state, POLICY, NOW, shadow=shadow) is not None) is proposed
    assert rules.retrain(state, POLICY, NOW, shadow=shadow, rollback_wanted=True) is None


# -- rollback ---------------------------------------------------------------------------

FRESH = ModelState(
    production=version(2, promoted_days_ago=1, parent=1),
    previous=version(1, "archived", promoted_days_ago=40),
)
WORSE = Rescore(rows=150, current_correct=105, previous_correct=135, unusable=12)


def test_a_worse_new_version_proposes_rollback() -> None:
    found = rules.rollback(FRESH, WORSE, POLICY, NOW)
    assert found is not None
    assert (found.action_type, found.model_version, found.risk) == ("rollback_model", 2, "high")
    assert found.requires_approval is True
    assert found.parameters == {"to_version": 1}
    evidence = found.evidence
    assert (evidence["accuracy"], evidence["previous_accuracy"]) == (0.7, 0.9)
    assert (evidence["rows"], evidence["unusable_rows"]) == (150, 12)
    assert "roll back to v1" in found.reason
    auto = resolve(POLICY, AgentSettings(auto_rollback=True))
    assert rules.rollback(FRESH, WORSE, auto, NOW).requires_approval is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("state", "score", "policy"),
    [
        (FRESH, Rescore(150, 134, 135), POLICY),  # better by 1/150 < 0.01
        (FRESH, Rescore(100, 50, 51), POLICY),  # exactly the margin: not "more than"
        (FRESH, Rescore(99, 50, 99), POLICY),  # too few labelled rows
        (FRESH, WORSE, Policy(rollback_model=RollbackRule(min_labelled=500))),
        (FRESH, WORSE, Policy(promote_margin=0.25)),
        (FRESH, WORSE, Policy(rollback_model=RollbackRule(enabled=False))),
        (replace(FRESH, previous=None), WORSE, POLICY),
        (replace(FRESH, production=version(2, promoted_days_ago=8)), WORSE, POLICY),
        (replace(FRESH, production=version(2, promoted_days_ago=1, task="regression")),
         WORSE, POLICY),
        (replace(FRESH, actions=(action("rollback_model", "rejected", version=2),)), WORSE,
         POLICY),
        (replace(FRESH, actions=(action("rollback_model", "pending", version=2),)), WORSE,
         POLICY),
    ],
)  # fmt: skip
def test_no_rollback(state: ModelState, score: Rescore, policy: Policy) -> None:
    assert rules.rollback(state, score, policy, NOW) is None


def test_a_rejected_rollback_is_asked_again_after_the_cool_down() -> None:
    state = replace(FRESH, actions=(action("rollback_model", "rejected", 30, version=2),))
    assert rules.rollback_due(state, POLICY, NOW)
    assert rules.rollback(state, WORSE, POLICY, NOW) is not None
    longer = Policy(rollback_model=RollbackRule(cooldown=timedelta(days=2)))
    assert not rules.rollback_due(state, longer, NOW)


def test_rescore_and_shadow_score_compare_labels_as_text() -> None:
    score = rules.rescore([(1, "1"), ("0", 0), (True, "true"), (1, 0)], [1, 1, False, 0], 3)
    assert (score.rows, score.current_correct, score.previous_correct, score.unusable) == (
        4, 3, 2, 3,
    )  # fmt: skip
    shadow = rules.shadow_score([("a", "a", "a", 5), ("b", "a", "b", 3), (1, "1", "2", 2)])
    assert (shadow.rows, shadow.candidate_correct, shadow.production_correct) == (10, 8, 5)
    assert shadow.agreement == pytest.approx(0.7)


# -- incident ---------------------------------------------------------------------------


def test_failing_or_slow_answers_open_an_incident_once_per_cool_down() -> None:
    state = replace(STATE, alerts=(alert(), alert("error_rate", "critical", id=11)))
    found = rules.incident(state, POLICY, NOW)
    assert found is not None
    assert (found.action_type, found.model_version, found.source_alert_id) == (
        "open_incident", 1, 11,
    )  # fmt: skip
    assert (found.risk, found.requires_approval) == ("low", False)
    assert found.evidence["alert"]["rule"] == "error_rate"
    assert "alert #11" in found.reason
    # drift is retraining's business, not an incident's
    assert rules.incident(STATE, POLICY, NOW) is None
    told = replace(state, actions=(action("open_incident", "succeeded", hours_ago=2),))
    assert rules.incident(told, POLICY, NOW) is None
    later = replace(state, actions=(action("open_incident", "succeeded", hours_ago=25),))
    assert rules.incident(later, POLICY, NOW) is not None
    quiet = Policy.model_validate({"open_incident": {"enabled": False}})
    assert rules.incident(state, quiet, NOW) is None
