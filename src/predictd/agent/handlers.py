"""What each action type does once approved. Every handler is idempotent: an executor that
takes over an action whose first executor stopped mid-way (its lease ran out) runs the
handler again, so each one first looks whether its work is already done.

A handler returns the action's result (JSON) or raises; whatever it raises becomes the
action's error text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from predictd.agent.actions import Action, ActionType
from predictd.agent.policy import RetrainParameters
from predictd.agent.webhook import ActionWebhook
from predictd.db.engine import Database
from predictd.errors import Conflict, InvalidInput
from predictd.registry.service import ModelRegistry
from predictd.settings import RetrainingSettings

log = logging.getLogger("predictd.agent")


@dataclass(frozen=True, slots=True)
class Toolbox:
    """What handlers work with."""

    db: Database
    registry: ModelRegistry
    retraining: RetrainingSettings
    webhook: ActionWebhook


Handler = Callable[[Toolbox, Action], Awaitable[dict[str, Any]]]


def _version(action: Action) -> int:
    if action.model_version is None:
        raise InvalidInput(
            f"{action.action_type} needs the model version it is about", field="model_version"
        )
    return action.model_version


async def promote_candidate(tools: Toolbox, action: Action) -> dict[str, Any]:
    """Make the candidate version production (done already: success, nothing changed).
    Only what was approved: a candidate somebody archived since, or a production version
    other than the one the evidence compared it with, fails the action instead."""
    name, version = action.model_name, _version(action)
    candidate = await tools.registry.get(name, version)
    if candidate.stage == "production":
        return {"outcome": "already production", "version": version}
    if candidate.stage != "staging":
        raise Conflict(f"{name!r} v{version} is {candidate.stage}, not staging: not promoted")
    before = await tools.registry.production(name)
    compared = action.evidence.get("production_version")
    if compared is not None and (before is None or before.version != compared):
        now = before.version if before else None
        raise Conflict(
            f"{name!r} v{version} was judged against production v{compared}, but production "
            f"is now v{now}: not promoted; the agent will judge it again"
        )
    done = await tools.registry.promote(name, version)
    return {
        "outcome": "promoted",
        "version": done.version,
        "previous": before.version if before else None,
    }


async def rollback_model(tools: Toolbox, action: Action) -> dict[str, Any]:
    """Roll back while the named bad version is still production: once it is not, whoever
    moved it (this action's earlier attempt, or a person) has done the work."""
    name, bad = action.model_name, _version(action)
    current = await tools.registry.production(name)
    if current is None or current.version != bad:
        return {
            "outcome": "already rolled back",
            "bad_version": bad,
            "production": current.version if current else None,
        }
    # only_from: checked again under the registry's lock, so two runs never go back twice
    done = await tools.registry.rollback(name, only_from=bad)
    return {"outcome": "rolled back", "bad_version": bad, "production": done.version}


async def start_shadow(tools: Toolbox, action: Action) -> dict[str, Any]:
    """Stage the candidate. Servers with PREDICTD_SHADOW=true send a shadow copy of each
    request to the newest staging version of a model, so ``shadowed`` says whether that is
    this one (a newer staging version would take the traffic instead)."""
    name, version = action.model_name, _version(action)
    candidate = await tools.registry.get(name, version)
    if candidate.stage == "production":
        raise Conflict(f"{name!r} v{version} is already production: nothing to shadow")
    already = candidate.stage == "staging"
    if not already:
        await tools.registry.stage(name, version)
    staging = [
        v.version for v in await tools.registry.serving_versions([name]) if v.stage == "staging"
    ]
    return {
        "outcome": "already staging" if already else "staged",
        "version": version,
        "shadow_started_at": datetime.now(UTC).isoformat(),
        "shadowed": bool(staging) and max(staging) == version,
    }


async def open_incident(tools: Toolbox, action: Action) -> dict[str, Any]:
    """Record the incident in the result and POST it to the alert webhook, if one is set
    (an incident the webhook would not take fails the action, so it shows)."""
    incident = {
        "model": action.model_name,
        "version": action.model_version,
        "reason": action.reason,
        "evidence": action.evidence,
        "source_alert_id": action.source_alert_id,
        "opened_at": datetime.now(UTC).isoformat(),
    }
    body = {"event": "incident", "action_id": action.id, "incident": incident}
    if tools.webhook.url is None:
        return {"incident": incident, "sent": None}
    await tools.webhook.post(body)
    return {"incident": incident, "sent": body}


async def retrain_model(tools: Toolbox, action: Action) -> dict[str, Any]:
    """Train a candidate from the model's training data and labelled feedback; it is
    registered as `staging` (never promoted here). The action's parameters override the
    PREDICTD_RETRAIN_* settings."""
    from predictd.retraining import RetrainOptions, retrain

    def progress(line: str) -> None:
        log.info(
            "retraining", extra={"action": action.id, "model": action.model_name, "progress": line}
        )

    # The stored parameters are read as the policy writes them (since as "14d", ...), checked
    # and typed; anything else (hyperparameters, base_data) is refused, naming it.
    try:
        wanted = RetrainParameters.model_validate(action.parameters)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InvalidInput(f"retrain parameter {where}: {problem['msg']}", field=where) from None
    overrides = wanted.model_dump(exclude_none=True)
    # A retried action (its executor died after registering) finds its candidate, not a twin.
    mark = {"agent_action": str(action.id)}
    for version in await tools.registry.list_versions(action.model_name):
        if version.tags.get("agent_action") == mark["agent_action"]:
            return {"outcome": "already trained", "model": version.name,
                    "version": version.version, "stage": version.stage,
                    "parent_version": version.parent_version}  # fmt: skip
    options = RetrainOptions.from_settings(
        action.model_name, tools.retraining, tags=mark, **overrides
    )
    result = await retrain(tools.db, tools.registry, options, progress=progress)
    return dict(result.to_json())


HANDLERS: dict[ActionType, Handler] = {
    "promote_candidate": promote_candidate,
    "rollback_model": rollback_model,
    "start_shadow": start_shadow,
    "open_incident": open_incident,
    "retrain_model": retrain_model,
}
