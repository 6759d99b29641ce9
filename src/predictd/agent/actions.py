"""The words of the agent: what an action is, how risky, and where it stands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

ActionType = Literal[
    "retrain_model", "promote_candidate", "rollback_model", "start_shadow", "open_incident"
]
ACTION_TYPES: tuple[ActionType, ...] = get_args(ActionType)
Risk = Literal["low", "medium", "high"]
RISKS: tuple[Risk, ...] = get_args(Risk)
Status = Literal["pending", "approved", "rejected", "running", "succeeded", "failed", "expired"]
STATUSES: tuple[Status, ...] = get_args(Status)
# An open proposal blocks another of the same type for the same model (the database's
# uq_agent_actions_open index says the same).
OPEN_STATUSES: tuple[Status, ...] = ("pending", "approved", "running")
AGENT = "agent"  # requested_by of what the policy proposes


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the policy wants done, before it is stored."""

    action_type: ActionType
    model_name: str
    reason: str
    risk: Risk
    requires_approval: bool
    model_version: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # the alert, the metrics
    source_alert_id: int | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """A stored proposal and everything that happened to it."""

    id: int
    action_type: ActionType
    model_name: str
    model_version: int | None
    parameters: dict[str, Any]
    reason: str
    evidence: dict[str, Any]
    source_alert_id: int | None
    risk: Risk
    requires_approval: bool
    status: Status
    requested_by: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_comment: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    executed_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
