"""Agent test fixtures: proposals, a migrated database with a registry, executors over their
own engines (as separate replicas would have)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from predictd.agent.actions import AGENT, Action, ActionType, Proposal, Risk
from predictd.agent.executor import Executor
from predictd.agent.handlers import HANDLERS, Handler
from predictd.agent.service import ActionService
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.registry.service import ModelRegistry
from tests.support.app import make_settings

TTL = timedelta(days=3)


def proposal(
    action_type: ActionType = "open_incident",
    model: str = "sentiment",
    *,
    version: int | None = None,
    risk: Risk = "medium",
    requires_approval: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> Proposal:
    return Proposal(
        action_type=action_type,
        model_name=model,
        reason=f"{action_type} for {model}: accuracy fell to 0.61",
        risk=risk,
        requires_approval=requires_approval,
        model_version=version,
        parameters=dict(parameters or {}),
        evidence={
            "alert": {"rule": "accuracy", "title": f"{model} v1 accuracy 0.610"},
            "metrics": {"accuracy": 0.61, "labelled": 240},
        },
        source_alert_id=7,
    )


@dataclass
class Replicas:
    """Executors, each over its own engine to one database (replicas of one service)."""

    tmp_path: Path
    db_url: str
    opened: list[Database] = field(default_factory=list)

    def executor(
        self,
        *,
        lease_s: float = 900.0,
        webhook_url: str | None = None,
        handlers: Mapping[ActionType, Handler] = HANDLERS,
    ) -> Executor:
        settings = make_settings(
            self.tmp_path, self.db_url, agent_lease_s=lease_s, alert_webhook_url=webhook_url
        )
        db = Database(settings.database)
        self.opened.append(db)
        registry = ModelRegistry(settings.inference, db)
        return Executor(
            db,
            registry,
            settings.agent,
            settings.retraining,
            settings.alerts.webhook_url,
            handlers=handlers,
        )


@pytest.fixture
async def replicas(db: Database, db_url: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    """Needs ``db`` so the schema exists first."""
    made = Replicas(tmp_path, db_url)
    try:
        yield made
    finally:
        for opened in made.opened:
            await opened.dispose()


@pytest.fixture
def actions(db: Database) -> ActionService:
    return ActionService(db)


async def audit_rows(db: Database, prefix: str = "actions.") -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_log).where(audit_log.c.action.startswith(prefix)).order_by(audit_log.c.id)
        )
        return [dict(r._mapping) for r in rows]


async def stored(
    actions: ActionService, p: Proposal, *, ttl: timedelta = TTL, requested_by: str = AGENT
) -> Action:
    """``actions.propose`` for a proposal that must be stored (none of its kind is open)."""
    action = await actions.propose(p, ttl=ttl, requested_by=requested_by)
    assert action is not None, f"an open {p.action_type} for {p.model_name} exists"
    return action
