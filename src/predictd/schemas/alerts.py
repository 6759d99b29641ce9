"""Bodies of /alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Alert(BaseModel):
    id: int
    rule: str
    model_name: str  # "" for an alert about the server itself
    severity: str
    status: str  # active | acknowledged | resolved
    title: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_notes: str | None


class AlertList(BaseModel):
    items: list[Alert]


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="who; defaults to the API key's name (the audit log always has the key)",
    )


class ResolveRequest(AcknowledgeRequest):
    notes: str | None = Field(default=None, max_length=10_000)
