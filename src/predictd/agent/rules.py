"""The policy's rules: pure functions from what is known about one model to proposals.

No database, no model loading: the planner gathers the facts (agent/evidence.py) and re-scores
what needs re-scoring, and each rule here decides over plain values, so every threshold and
margin is tested without either. A rule says nothing when the action would be pointless:
nothing for a model without a production version, no retraining while a candidate made from the
current production version is still being judged, no promotion of what is production already,
and nothing that a person rejected (or that ran, or failed) within the rule's cool-down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from predictd.agent.actions import OPEN_STATUSES, ActionType, Proposal
from predictd.agent.policy import Policy, Rule
from predictd.registry.models import ModelVersion
from predictd.vocabulary import comparable_label

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# Compared as accuracies, a difference meant to equal the margin must not fail on rounding.
EPSILON = 1e-9
# A decision on a candidate is about that version, not a moment: it is not asked again.
DECIDED_FOR_GOOD = ("rejected",)
DONE_WITH = ("rejected", "failed", "succeeded")


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    rule: str
    model_name: str
    severity: str
    title: str
    data: Mapping[str, Any]
    created_at: datetime

    def evidence(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "severity": self.severity,
                "title": self.title, "data": dict(self.data),
                "created_at": self.created_at.isoformat()}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PastAction:
    """A stored action of the model, as far as the rules care."""

    action_type: str
    model_version: int | None
    status: str
    updated_at: datetime
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ModelState:
    """One model with a production version, and what is known about it."""

    production: ModelVersion
    candidate: ModelVersion | None = None  # the newest staging version
    previous: ModelVersion | None = None  # the version production was before this one
    alerts: Sequence[OpenAlert] = ()
    actions: Sequence[PastAction] = ()
    performance: Mapping[str, Any] | None = None  # this pass's row for the production version
    drift: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.production.name


@dataclass(frozen=True, slots=True)
class ShadowScore:
    """The candidate's shadow answers and production's answers to the same labelled
    requests (joined through ``shadow_of``)."""

    rows: int
    candidate_correct: int
    production_correct: int
    agreed: int  # the candidate answered what production answered

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate_correct / self.rows if self.rows else 0.0

    @property
    def production_accuracy(self) -> float:
        return self.production_correct / self.rows if self.rows else 0.0

    @property
    def agreement(self) -> float:
        return self.agreed / self.rows if self.rows else 0.0


@dataclass(frozen=True, slots=True)
class Rescore:
    """Production's recorded answers since its promotion and its predecessor's answers,
    re-scored now, on the same labelled inputs."""

    rows: int
    current_correct: int
    previous_correct: int
    unusable: int = 0  # labelled, but the input was not stored (hash/none) or does not fit

    @property
    def current_accuracy(self) -> float:
        return self.current_correct / self.rows if self.rows else 0.0

    @property
    def previous_accuracy(self) -> float:
        return self.previous_correct / self.rows if self.rows else 0.0


@dataclass(frozen=True, slots=True)
class Holdout:
    """Candidate and production accuracies on the retraining holdout (training_run)."""

    candidate: float
    production: float
    run: Mapping[str, Any] = field(default_factory=dict)


# -- helpers -----------------------------------------------------------------------------


def _blocked(
    state: ModelState, action_type: ActionType, rule: Rule, now: datetime,
    version: int | None = None,
) -> bool:  # fmt: skip
    """An open action of this type for the model (the database allows one), or, for this
    version when given, one that a person rejected or that ran or failed within the rule's
    cool-down. Expired proposals block nothing: nobody decided."""
    for action in state.actions:
        if action.action_type != action_type:
            continue
        if action.status in OPEN_STATUSES:
            return True
        if version is not None and action.model_version != version:
            continue
        if action.status in DONE_WITH and now - action.updated_at < rule.cooldown:
            return True
    return False


def _decided(
    state: ModelState, types: Sequence[str], version: int, statuses: Sequence[str]
) -> bool:
    return any(
        a.action_type in types and a.model_version == version and a.status in statuses
        for a in state.actions
    )


def holdout_of(version: ModelVersion) -> Holdout | None:
    """The holdout accuracies `predictd train` stored, or None when absent or malformed."""
    run = version.training_run if isinstance(version.training_run, Mapping) else {}
    scores = run.get("holdout")
    if not isinstance(scores, Mapping):
        return None
    candidate, production = _accuracy(scores, "candidate"), _accuracy(scores, "production")
    if candidate is None or production is None:
        return None
    return Holdout(candidate, production, run)


def _accuracy(scores: Mapping[str, Any], side: str) -> float | None:
    found = scores.get(side)
    value = found.get("accuracy") if isinstance(found, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _beats(candidate: float, production: float, margin: float) -> bool:
    return candidate - production >= margin - EPSILON


def candidate_rejected(state: ModelState) -> bool:
    """A person rejected shadowing or promoting the current candidate."""
    candidate = state.candidate
    return candidate is not None and _decided(
        state, ("start_shadow", "promote_candidate"), candidate.version, DECIDED_FOR_GOOD
    )


def under_evaluation(state: ModelState, shadow: ShadowScore | None, policy: Policy) -> bool:
    """A candidate made from the current production version is still being judged: it is
    newer, not rejected, and has lost neither on its training holdout nor in shadow (with
    enough labelled rows to say so)."""
    candidate, production = state.candidate, state.production
    if candidate is None or candidate.version <= production.version:
        return False
    if candidate.parent_version != production.version or candidate_rejected(state):
        return False
    holdout = holdout_of(candidate)
    if holdout is not None and not _beats(holdout.candidate, holdout.production, policy.margin):
        return False
    lost_in_shadow = (
        shadow is not None
        and shadow.rows >= policy.promote_candidate.min_labelled
        and not _beats(shadow.candidate_accuracy, shadow.production_accuracy, policy.margin)
    )
    return not lost_in_shadow


def shadow_score(groups: Iterable[tuple[Any, Any, Any, int]]) -> ShadowScore:
    """From (candidate's answer, production's answer, true label, count) groups; labels
    compare as text (``comparable_label``), so a client's "1" matches a model's 1."""
    rows = candidate = production = agreed = 0
    for shadow_output, production_output, actual, count in groups:
        truth = comparable_label(actual)
        shadow_label = comparable_label(shadow_output)
        production_label = comparable_label(production_output)
        rows += count
        candidate += count * (shadow_label == truth)
        production += count * (production_label == truth)
        agreed += count * (shadow_label == production_label)
    return ShadowScore(rows, candidate, production, agreed)


def rescore(current: Sequence[tuple[Any, Any]], previous: Sequence[Any], unusable: int) -> Rescore:
    """``current``: (recorded answer, true label) per usable row; ``previous``: the
    predecessor's answer to each of the same rows."""
    truths = [comparable_label(actual) for _, actual in current]
    return Rescore(
        rows=len(current),
        current_correct=sum(
            comparable_label(out) == t for (out, _), t in zip(current, truths, strict=True)
        ),
        previous_correct=sum(
            comparable_label(out) == t for out, t in zip(previous, truths, strict=True)
        ),
        unusable=unusable,
    )


# -- rules -------------------------------------------------------------------------------


def retrain(
    state: ModelState,
    policy: Policy,
    now: datetime,
    *,
    shadow: ShadowScore | None = None,
    rollback_wanted: bool = False,
) -> Proposal | None:
    """An open alert of the policy's rules about the production version → retrain_model.
    Not while a candidate is being judged, nor when rolling back is the answer."""
    rule = policy.retrain_model
    production = state.production
    alerts = sorted(
        (a for a in state.alerts if a.rule in rule.alert_rules
         and a.data.get("version", production.version) == production.version),
        key=lambda a: (SEVERITY_ORDER.get(a.severity, len(SEVERITY_ORDER)), a.created_at, a.id),
    )  # fmt: skip
    rollback_open = any(
        a.action_type == "rollback_model" and a.status in OPEN_STATUSES for a in state.actions
    )
    if not rule.enabled or not alerts or rollback_wanted or rollback_open:
        return None
    if _blocked(state, "retrain_model", rule, now):
        return None
    if under_evaluation(state, shadow, policy):
        return None
    alert = alerts[0]
    evidence: dict[str, Any] = {"alert": alert.evidence()}
    if len(alerts) > 1:
        evidence["other_alerts"] = [a.evidence() for a in alerts[1:]]
    if state.performance is not None:
        evidence["performance"] = _performance_evidence(state.performance)
    if state.drift is not None:
        evidence["drift"] = _drift_evidence(state.drift)
    return Proposal(
        action_type="retrain_model",
        model_name=state.name,
        model_version=production.version,
        reason=f"{alert.title} (alert #{alert.id}, {alert.rule}, open since "
        f"{alert.created_at:%Y-%m-%d %H:%M} UTC): retrain {state.name} from v"
        f"{production.version} with the labelled feedback",
        risk=rule.risk,
        requires_approval=rule.requires_approval,
        parameters=rule.parameters.as_json(),
        evidence=evidence,
        source_alert_id=alert.id,
    )


def incident(state: ModelState, policy: Policy, now: datetime) -> Proposal | None:
    """An open alert of the incident rule's kinds (errors, latency) → open_incident, once
    per alert: people are told, with the alert and what was measured, through the webhook."""
    rule = policy.open_incident
    alerts = sorted(
        (a for a in state.alerts if a.rule in rule.alert_rules),
        key=lambda a: (SEVERITY_ORDER.get(a.severity, len(SEVERITY_ORDER)), a.created_at, a.id),
    )
    if not rule.enabled or not alerts or _blocked(state, "open_incident", rule, now):
        return None
    alert = alerts[0]
    evidence: dict[str, Any] = {"alert": alert.evidence()}
    if len(alerts) > 1:
        evidence["other_alerts"] = [a.evidence() for a in alerts[1:]]
    return Proposal(
        action_type="open_incident",
        model_name=state.name,
        model_version=state.production.version,
        reason=f"{alert.title} (alert #{alert.id}, {alert.rule}): not something retraining "
        f"fixes; open an incident for {state.name}",
        risk=rule.risk,
        requires_approval=rule.requires_approval,
        evidence=evidence,
        source_alert_id=alert.id,
    )


def rollback_due(state: ModelState, policy: Policy, now: datetime) -> bool:
    """Whether the production version should be compared with its predecessor at all:
    promoted within the window, a classifier like its predecessor, not already decided."""
    rule = policy.rollback_model
    production, previous = state.production, state.previous
    return (
        rule.enabled
        and previous is not None
        and production.promoted_at is not None
        and now - production.promoted_at <= rule.window
        and production.task == previous.task == "classification"
        and not _blocked(state, "rollback_model", rule, now, production.version)
    )


def rollback(state: ModelState, score: Rescore, policy: Policy, now: datetime) -> Proposal | None:
    """The newly promoted version answered enough labelled requests, and its predecessor,
    re-scored on the same inputs, is better by more than the margin → rollback_model."""
    rule = policy.rollback_model
    production, previous = state.production, state.previous
    if previous is None or not rollback_due(state, policy, now) or score.rows < rule.min_labelled:
        return None
    drop = score.previous_accuracy - score.current_accuracy
    if drop <= policy.margin + EPSILON:
        return None
    promoted_at = production.promoted_at
    return Proposal(
        action_type="rollback_model",
        model_name=state.name,
        model_version=production.version,
        reason=f"{state.name} v{production.version}, promoted "
        f"{promoted_at:%Y-%m-%d %H:%M} UTC, answered {score.rows} labelled requests with "
        f"accuracy {score.current_accuracy:.3f}; v{previous.version} re-scored on the same "
        f"inputs gets {score.previous_accuracy:.3f}: roll back to v{previous.version}",
        risk=rule.risk,
        requires_approval=rule.requires_approval,
        parameters={"to_version": previous.version},
        evidence={
            "version": production.version,
            "previous_version": previous.version,
            "promoted_at": promoted_at.isoformat() if promoted_at else None,
            "rows": score.rows,
            "unusable_rows": score.unusable,
            "accuracy": score.current_accuracy,
            "previous_accuracy": score.previous_accuracy,
            "margin": policy.margin,
            "min_labelled": rule.min_labelled,
        },
    )


def start_shadow(
    state: ModelState, shadowed: bool, policy: Policy, now: datetime
) -> Proposal | None:
    """The newest staging candidate, trained from the current production version, beat it
    on the training holdout by the margin, and is not being shadowed yet → start_shadow."""
    rule = policy.start_shadow
    candidate, production = state.candidate, state.production
    if not rule.enabled or candidate is None or shadowed or candidate_rejected(state):
        return None
    holdout = holdout_of(candidate)
    if holdout is None:
        return None
    parents = {candidate.parent_version, holdout.run.get("parent_version", production.version)}
    if parents != {production.version}:
        return None  # measured against another production version: stale
    if not _beats(holdout.candidate, holdout.production, policy.margin):
        return None
    if _decided(state, ("start_shadow",), candidate.version, ("succeeded",)):
        return None
    if _blocked(state, "start_shadow", rule, now, candidate.version):
        return None
    return Proposal(
        action_type="start_shadow",
        model_name=state.name,
        model_version=candidate.version,
        reason=f"{state.name} v{candidate.version} scored {holdout.candidate:.3f} on its "
        f"training holdout against production v{production.version}'s "
        f"{holdout.production:.3f}: shadow it on live requests",
        risk=rule.risk,
        requires_approval=rule.requires_approval,
        evidence={
            "candidate_version": candidate.version,
            "production_version": production.version,
            "holdout": {
                "candidate_accuracy": holdout.candidate,
                "production_accuracy": holdout.production,
            },
            "rows": holdout.run.get("rows"),
            "window": holdout.run.get("window"),
            "margin": policy.margin,
        },
    )


def promote(
    state: ModelState, score: ShadowScore, policy: Policy, now: datetime
) -> Proposal | None:
    """The candidate's shadow answers beat production's on the same labelled requests by the
    margin, over enough rows → promote_candidate. Shadow evidence alone decides: shadowing
    the agent did not start (PREDICTD_SHADOW and `models stage` by hand) counts as well."""
    rule = policy.promote_candidate
    candidate, production = state.candidate, state.production
    if not rule.enabled or candidate is None or candidate.stage != "staging":
        return None
    if candidate.version == production.version or candidate_rejected(state):
        return None
    if score.rows < rule.min_labelled:
        return None
    if not _beats(score.candidate_accuracy, score.production_accuracy, policy.margin):
        return None
    if _blocked(state, "promote_candidate", rule, now, candidate.version):
        return None
    started = next(
        (a.result.get("shadow_started_at") for a in state.actions
         if a.action_type == "start_shadow" and a.model_version == candidate.version
         and a.status == "succeeded" and a.result),
        None,
    )  # fmt: skip
    evidence: dict[str, Any] = {
        "candidate_version": candidate.version,
        "production_version": production.version,
        "rows": score.rows,
        "candidate_accuracy": score.candidate_accuracy,
        "production_accuracy": score.production_accuracy,
        "agreement": score.agreement,
        "margin": policy.margin,
        "min_labelled": rule.min_labelled,
        "shadow_started_at": started,
    }
    holdout = holdout_of(candidate)
    if holdout is not None:
        evidence["holdout"] = {"candidate_accuracy": holdout.candidate,
                               "production_accuracy": holdout.production}  # fmt: skip
    return Proposal(
        action_type="promote_candidate",
        model_name=state.name,
        model_version=candidate.version,
        reason=f"in shadow, {state.name} v{candidate.version} answered {score.rows} labelled "
        f"requests with accuracy {score.candidate_accuracy:.3f} against production "
        f"v{production.version}'s {score.production_accuracy:.3f} (agreeing on "
        f"{score.agreement:.0%}): promote v{candidate.version}",
        risk=rule.risk,
        requires_approval=rule.requires_approval,
        evidence=evidence,
    )


def _performance_evidence(row: Mapping[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics") or {}
    return {"version": row.get("model_version"), "predictions": row.get("predictions"),
            "labelled": row.get("labelled"),
            "metrics": {k: v for k, v in metrics.items() if k != "confusion"}}  # fmt: skip


def _drift_evidence(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in
            ("model_version", "status", "rows", "score", "drift_detected", "message")}  # fmt: skip
