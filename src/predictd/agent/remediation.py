"""What follows each monitor pass: the policy plans, the action store keeps what is new.

The monitor (monitoring/) knows nothing of the agent: the server's schedule and `predictd
monitor run` hand this step to it, so both run the same pass."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from predictd.agent.actions import Action
from predictd.agent.planner import plan
from predictd.agent.policy import Policy, load_policy
from predictd.agent.service import ActionService
from predictd.db.engine import Database
from predictd.monitoring.monitor import MonitorResult
from predictd.registry.service import ModelRegistry
from predictd.settings import AgentSettings

log = logging.getLogger("predictd.agent")


class Remediation:
    def __init__(
        self,
        db: Database,
        registry: ModelRegistry,
        settings: AgentSettings,
        actions: ActionService,
        policy: Policy | None = None,
    ) -> None:
        """The policy file is read here, once: a bad one stops the server or the command at
        start, naming the field, rather than failing every pass."""
        self.db = db
        self.registry = registry
        self.settings = settings
        self.actions = actions
        self.policy = policy if policy is not None else load_policy(settings.policy)

    async def after_pass(self, result: MonitorResult, model: str | None = None) -> list[Action]:
        """Store the proposals the policy makes on what the pass found (about ``model`` only,
        when the pass was); one already open for the same model and action type is not
        proposed twice."""
        now = datetime.now(UTC)
        await self.actions.expire_due(now)
        proposals = await plan(self.db, self.registry, self.settings, self.policy, result, now)
        proposals = [p for p in proposals if model is None or p.model_name == model]
        stored = []
        for proposal in proposals:
            action = await self.actions.propose(proposal, ttl=self.settings.action_ttl)
            if action is not None:
                stored.append(action)
                log.info(
                    "action proposed",
                    extra={"action": action.id, "type": action.action_type,
                           "model": action.model_name, "status": action.status},
                )  # fmt: skip
        return stored
