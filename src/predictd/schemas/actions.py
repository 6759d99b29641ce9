"""Bodies of /actions: remediation actions the agent proposed, and the decisions on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from predictd.agent.actions import ActionType, Risk, Status
from predictd.agent.service import COMMENT_MAX


class ActionPublic(BaseModel):
    id: int
    action_type: ActionType
    model_name: str
    model_version: int | None
    parameters: dict[str, Any]
    reason: str
    evidence: dict[str, Any] = Field(description="what the proposal rests on: the alert, metrics")
    source_alert_id: int | None
    risk: Risk
    requires_approval: bool
    status: Status
    requested_by: str = Field(description='"agent" for the policy\'s proposals, else a key')
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_comment: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    executed_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class ActionList(BaseModel):
    actions: list[ActionPublic]


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=COMMENT_MAX)


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=COMMENT_MAX, description="why not (required)")
