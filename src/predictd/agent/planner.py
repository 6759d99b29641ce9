"""After each monitor pass: gather what the policy's rules need, re-score what must be
re-scored, and let the rules (agent/rules.py) say what to propose. Storing the proposals is
ActionService's; this module only reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from predictd.agent import rules
from predictd.agent.actions import Proposal
from predictd.agent.evidence import LabelledAnswer, PlannerEvidence
from predictd.agent.policy import Policy, resolve
from predictd.agent.rules import ModelState, Rescore, ShadowScore
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.inference.runtime import ModelInput, Prediction
from predictd.inference.shadow_worker import Item, predict_with
from predictd.monitoring.monitor import MonitorResult
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from predictd.settings import AgentSettings

log = logging.getLogger("predictd.agent")


async def plan(
    db: Database,
    registry: ModelRegistry,
    settings: AgentSettings,
    policy: Policy,
    result: MonitorResult,
    now: datetime,
) -> list[Proposal]:
    """The proposals the policy makes now, for every model with a production version;
    nothing when the agent is off (PREDICTD_AGENT=false)."""
    if not settings.enabled:
        return []
    policy = resolve(policy, settings)
    async with translate_errors("reading the agent's evidence"), db.engine.connect() as conn:
        facts = await _gather(PlannerEvidence(conn), policy, result, now)
    proposals: list[Proposal] = []
    for state, shadow, shadowed, answers in facts:
        rolled_back = None
        if answers is not None and state.previous is not None:
            score = await _rescore(registry, state.previous, answers, policy)
            if score is not None:
                rolled_back = rules.rollback(state, score, policy, now)
        found = (
            rules.promote(state, shadow, policy, now) if shadow is not None else None,
            rules.start_shadow(state, shadowed, policy, now),
            rolled_back,
            rules.retrain(state, policy, now, shadow=shadow, rollback_wanted=bool(rolled_back)),
            rules.incident(state, policy, now),
        )
        proposals += [p for p in found if p is not None]
    return proposals


# (the model, the candidate's shadow score, whether it answers in shadow, production's
# labelled answers since its promotion when a rollback is worth checking)
Facts = tuple[ModelState, ShadowScore | None, bool, Sequence[LabelledAnswer] | None]


async def _gather(
    evidence: PlannerEvidence, policy: Policy, result: MonitorResult, now: datetime
) -> list[Facts]:
    models = await evidence.models()
    names = [production.name for production, _, _ in models]
    if not names:
        return []
    rule_set = (policy.retrain_model, policy.rollback_model, policy.start_shadow,
                policy.promote_candidate)  # fmt: skip
    since = now - max(rule.cooldown for rule in rule_set)
    candidates = {candidate.version for _, candidate, _ in models if candidate is not None}
    watched = {*policy.retrain_model.alert_rules, *policy.open_incident.alert_rules}
    alerts = await evidence.open_alerts(names, sorted(watched))
    actions = await evidence.actions(names, since, candidates)
    facts: list[Facts] = []
    for production, candidate, previous in models:
        name = production.name
        state = ModelState(
            production=production,
            candidate=candidate,
            previous=previous,
            alerts=alerts.get(name, ()),
            actions=actions.get(name, ()),
            performance=_row_of(result.performance, production),
            drift=_row_of(result.drift, production),
        )
        shadow, shadowed = None, False
        if candidate is not None:
            groups = await evidence.shadow_groups(name, candidate.version, production.version)
            shadow = rules.shadow_score(groups)
            shadowed = await evidence.shadowed(name, candidate.version)
        answers = None
        if rules.rollback_due(state, policy, now) and production.promoted_at is not None:
            answers = await evidence.labelled_answers(
                name, production.version, production.promoted_at, policy.rollback_model.max_rows
            )
        facts.append((state, shadow, shadowed, answers))
    return facts


def _row_of(rows: Sequence[Mapping[str, Any]], version: ModelVersion) -> Mapping[str, Any] | None:
    """This pass's performance or drift row of ``version``, if it answered in the window."""
    return next(
        (r for r in rows
         if r.get("model_name") == version.name and r.get("model_version") == version.version),
        None,
    )  # fmt: skip


async def _rescore(
    registry: ModelRegistry,
    previous: ModelVersion,
    answers: Sequence[LabelledAnswer],
    policy: Policy,
) -> Rescore | None:
    """Production's recorded answers and ``previous`` re-scored on the same stored inputs.
    None when too few inputs were stored to reach the rule's minimum (nothing is loaded), or
    the predecessor cannot be opened or run (logged: its artifact is the problem, and a
    rollback to it would fail the same way)."""
    usable = [(_item(stored), output, actual) for stored, output, actual in answers]
    items = [(item, output, actual) for item, output, actual in usable if item is not None]
    if len(items) < policy.rollback_model.min_labelled:
        return None
    max_chars = registry.settings.max_text_chars
    try:
        kept, _, outputs = await asyncio.to_thread(
            _predict, registry, previous, [item for item, _, _ in items], max_chars
        )
    except Exception as exc:
        log.warning(
            "agent could not re-score the previous production version",
            extra={"model": previous.name, "version": previous.version, "error": repr(exc)},
        )
        return None
    current = [(items[i][1], items[i][2]) for i in kept]
    return rules.rescore(current, [out.label for out in outputs], len(answers) - len(kept))


def _predict(
    registry: ModelRegistry, version: ModelVersion, items: Sequence[Item], max_chars: int
) -> tuple[list[int], list[ModelInput], list[Prediction]]:
    """Blocking: verify and load the artifact (sha256, schema, warm-up), then predict the
    inputs that fit its schema in one call."""
    runtime = registry.open_runtime(version, source="agent")
    return predict_with(runtime, items, max_chars)


def _item(stored: Any) -> Item | None:
    """A stored input as the runtime takes it; None for a hash, nothing, or anything else."""
    if not isinstance(stored, Mapping):
        return None
    text, features = stored.get("text"), stored.get("features")
    if isinstance(text, str) and features is None:
        return text, None
    if isinstance(features, Mapping) and text is None:
        return None, features
    return None
