"""Remediation actions over HTTP: read them (read scope), approve or reject them (approve)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from predictd.access.keys import Principal
from predictd.agent.actions import Action, Status
from predictd.api.auth import ApproveScope, ReadScope
from predictd.api.deps import MAX_ID, ServicesDep
from predictd.errors import InvalidInput, Unauthorized
from predictd.schemas.actions import ActionList, ActionPublic, ApproveRequest, RejectRequest
from predictd.schemas.errors import ErrorResponse

router = APIRouter(prefix="/actions", tags=["actions"])
ActionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the action's id")]
REVIEW_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


def _public(action: Action) -> ActionPublic:
    return ActionPublic.model_validate(action, from_attributes=True)


def _reviewer(who: Principal) -> str:
    if who.name is None:  # the approve scope is never anonymous; kept as a guard
        raise Unauthorized("reviewing an action needs an API key with the 'approve' scope")
    return who.name


@router.get("")
async def list_actions(
    services: ServicesDep,
    _: ReadScope,
    status: Annotated[Status | None, Query(description="only actions in this status")] = None,
) -> ActionList:
    """Newest first (the newest 500)."""
    return ActionList(actions=[_public(a) for a in await services.actions.list(status)])


@router.get("/{action_id}", responses={404: {"model": ErrorResponse}})
async def get_action(action_id: ActionId, services: ServicesDep, _: ReadScope) -> ActionPublic:
    return _public(await services.actions.get(action_id))


@router.post("/{action_id}/approve", responses=REVIEW_ERRORS)
async def approve_action(
    action_id: ActionId,
    who: ApproveScope,
    services: ServicesDep,
    body: ApproveRequest | None = None,
) -> ActionPublic:
    """pending -> approved: an executor runs it within PREDICTD_AGENT_EXECUTE_INTERVAL_S. 409
    when it is not pending (or expired), 403 for the key that requested it."""
    comment = body.comment if body is not None else None
    return _public(await services.actions.approve(action_id, _reviewer(who), comment))


@router.post("/{action_id}/reject", responses=REVIEW_ERRORS)
async def reject_action(
    action_id: ActionId, who: ApproveScope, services: ServicesDep, body: RejectRequest | None = None
) -> ActionPublic:
    """pending -> rejected, with a comment saying why (required)."""
    if body is None:
        raise InvalidInput("a rejection needs a comment saying why", field="comment")
    return _public(await services.actions.reject(action_id, _reviewer(who), body.comment))
