"""A candidate's two steps over plain values: its training holdout starts shadowing, its
shadow answers propose promotion; each only with enough evidence beyond the margin."""

from __future__ import annotations

from dataclasses import replace

import pytest

from predictd.agent import rules
from predictd.agent.policy import Policy, PromoteRule, ShadowRule, resolve
from predictd.agent.rules import ModelState, ShadowScore
from predictd.settings import AgentSettings
from tests.agent_policy.test_rules import NOW, PRODUCTION, action, version

POLICY = Policy()
CANDIDATE = version(2, "staging", parent=1, holdout=(0.90, 0.85))
STATE = ModelState(production=PRODUCTION, candidate=CANDIDATE)
FEWER = Policy(promote_candidate=PromoteRule(min_labelled=100))
WINNING = ShadowScore(rows=200, candidate_correct=180, production_correct=160, agreed=150)


def test_a_candidate_beating_production_on_its_holdout_starts_shadowing() -> None:
    found = rules.start_shadow(STATE, False, POLICY, NOW)
    assert found is not None
    assert (found.action_type, found.model_version) == ("start_shadow", 2)
    assert (found.risk, found.requires_approval) == ("low", False)
    assert found.evidence["holdout"] == {"candidate_accuracy": 0.9, "production_accuracy": 0.85}
    assert found.evidence["rows"] == {"train": 400, "holdout": 100}
    assert found.evidence["production_version"] == 1


@pytest.mark.parametrize(
    ("state", "shadowed", "policy", "proposed"),
    [
        (replace(STATE, candidate=version(2, "staging", parent=1, holdout=(0.86, 0.85))),
         False, POLICY, True),  # exactly the margin is enough
        (replace(STATE, candidate=version(2, "staging", parent=1, holdout=(0.855, 0.85))),
         False, POLICY, False),
        (STATE, False, Policy(promote_margin=0.1), False),
        (STATE, False, resolve(Policy(), AgentSettings(promote_margin=0.06)), False),
        (STATE, False, Policy(start_shadow=ShadowRule(enabled=False)), False),
        (STATE, True, POLICY, False),  # already answering in shadow
        (replace(STATE, candidate=version(2, "staging", parent=1)), False, POLICY, False),
        (replace(STATE, candidate=version(2, "staging", parent=3, holdout=(0.9, 0.8))),
         False, POLICY, False),  # measured against another production version
        (replace(STATE, candidate=None), False, POLICY, False),
        (replace(STATE, actions=(action("start_shadow", "succeeded", 200, version=2),)),
         False, POLICY, False),
        (replace(STATE, actions=(action("start_shadow", "rejected", 200, version=2),)),
         False, POLICY, False),
        (replace(STATE, actions=(action("start_shadow", "failed", 2, version=2),)),
         False, POLICY, False),
        (replace(STATE, actions=(action("start_shadow", "failed", 30, version=2),)),
         False, POLICY, True),
        (replace(STATE, actions=(action("start_shadow", "expired", 1, version=2),)),
         False, POLICY, True),
    ],
)  # fmt: skip
def test_start_shadow_thresholds(
    state: ModelState, shadowed: bool, policy: Policy, proposed: bool
) -> None:
    assert (rules.start_shadow(state, shadowed, policy, NOW) is not None) is proposed


def test_malformed_training_runs_start_nothing() -> None:
    for run in ({"holdout": None}, {"holdout": {"candidate": {"accuracy": "high"}}},
                {"holdout": {"candidate": {"accuracy": True}, "production": {"accuracy": 0.1}}},
                {"holdout": {"candidate": 0.9, "production": 0.1}}):  # fmt: skip
        state = replace(STATE, candidate=replace(CANDIDATE, training_run=run))
        assert rules.start_shadow(state, False, POLICY, NOW) is None


def test_a_candidate_winning_in_shadow_proposes_promotion() -> None:
    started = action("start_shadow", "succeeded", 48, version=2,
                     result={"shadow_started_at": "2026-05-02T12:00:00+00:00"})  # fmt: skip
    found = rules.promote(replace(STATE, actions=(started,)), WINNING, POLICY, NOW)
    assert found is not None
    assert (found.action_type, found.model_version) == ("promote_candidate", 2)
    assert (found.risk, found.requires_approval) == ("medium", True)
    evidence = found.evidence
    assert (evidence["candidate_accuracy"], evidence["production_accuracy"]) == (0.9, 0.8)
    assert (evidence["agreement"], evidence["rows"]) == (0.75, 200)
    assert evidence["shadow_started_at"] == "2026-05-02T12:00:00+00:00"
    assert evidence["holdout"]["candidate_accuracy"] == 0.9
    assert "0.900" in found.reason
    assert "0.800" in found.reason


@pytest.mark.parametrize(
    ("state", "score", "policy", "proposed"),
    [
        (STATE, replace(WINNING, rows=199), POLICY, False),  # too few labelled rows
        (STATE, ShadowScore(100, 90, 80, 75), FEWER, True),
        (STATE, ShadowScore(200, 162, 160, 190), POLICY, True),  # exactly the margin
        (STATE, ShadowScore(200, 161, 160, 190), POLICY, False),
        (STATE, WINNING, Policy(promote_margin=0.2), False),
        (STATE, WINNING, Policy(promote_candidate=PromoteRule(enabled=False)), False),
        (replace(STATE, candidate=replace(CANDIDATE, training_run=None)), WINNING, POLICY,
         True),  # shadow evidence alone decides
        (replace(STATE, candidate=None), WINNING, POLICY, False),
        (replace(STATE, candidate=replace(PRODUCTION)), WINNING, POLICY, False),  # production
        (replace(STATE, actions=(action("promote_candidate", "rejected", 500, version=2),)),
         WINNING, POLICY, False),  # a person rejected this candidate
        (replace(STATE, actions=(action("start_shadow", "rejected", 500, version=2),)),
         WINNING, POLICY, False),
        (replace(STATE, actions=(action("promote_candidate", "pending", version=2),)),
         WINNING, POLICY, False),
        (replace(STATE, actions=(action("promote_candidate", "failed", 30, version=2),)),
         WINNING, POLICY, True),
    ],
)  # fmt: skip
def test_promotion_thresholds(
    state: ModelState, score: ShadowScore, policy: Policy, proposed: bool
) -> None:
    assert (rules.promote(state, score, policy, NOW) is not None) is proposed
