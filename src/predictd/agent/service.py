"""ActionService: the approval workflow of agent actions.

    pending ──approve──> approved ──(executor)──> running ──> succeeded | failed
       │ └──reject───> rejected
       └──(PREDICTD_ACTION_TTL)──> expired

A proposal nobody decided in time expires; an action that needs no approval is stored
``approved`` at once (reviewed by ``agent:auto``). Whoever requested an action may not review
it. Every decision, and every refused one, is an audit row written in the decision's own
transaction, so the log and the table never disagree.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.access import audit
from predictd.agent.actions import ACTION_TYPES, AGENT, RISKS, STATUSES, Action, Proposal, Status
from predictd.agent.repository import ActionRepository
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.errors import Conflict, Forbidden, InvalidInput, NotFound, PredictdError
from predictd.observability import Metrics

log = logging.getLogger("predictd.agent")

AUTO_REVIEWER = "agent:auto"  # reviewed_by of an action the policy let through unreviewed
COMMENT_MAX = 2000
REVIEWER_MAX = 200  # the column's length


def action_json(action: Action) -> dict[str, Any]:
    """The action as JSON, timestamps in ISO 8601 (what the CLI prints and webhooks send)."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in dataclasses.asdict(action).items()
    }


def _target(action_id: int, action: Action | None = None) -> str:
    if action is None:
        return f"action {action_id}"
    return f"action {action_id} ({action.action_type}, {action.model_name})"


def _comment(comment: str | None, *, required: bool) -> str | None:
    text = (comment or "").strip()
    if required and not text:
        raise InvalidInput("a rejection needs a comment saying why", field="comment")
    if len(text) > COMMENT_MAX:
        raise InvalidInput(f"comment: at most {COMMENT_MAX} characters", field="comment")
    return text or None


class ActionService:
    def __init__(self, db: Database, metrics: Metrics | None = None) -> None:
        """``metrics``: the gauge ``predictd_agent_actions`` is refreshed after each change."""
        self.db = db
        self.metrics = metrics

    async def propose(
        self, p: Proposal, *, ttl: timedelta, requested_by: str = AGENT
    ) -> Action | None:
        """Store a proposal; None when an open action of its type for its model exists (it
        is not an error: the condition behind it is already being handled)."""
        if p.action_type not in ACTION_TYPES:
            raise InvalidInput(f"unknown action type {p.action_type!r}", field="action_type")
        if p.risk not in RISKS:
            raise InvalidInput(f"unknown risk {p.risk!r}", field="risk")
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "action_type": p.action_type,
            "model_name": p.model_name,
            "model_version": p.model_version,
            "parameters": dict(p.parameters),
            "reason": p.reason,
            "evidence": dict(p.evidence),
            "source_alert_id": p.source_alert_id,
            "risk": p.risk,
            "requires_approval": p.requires_approval,
            "status": "pending",
            "requested_by": requested_by[:REVIEWER_MAX],
            "created_at": now,
            "updated_at": now,
            "expires_at": now + ttl,
        }
        if not p.requires_approval:
            row.update(
                status="approved",
                reviewed_by=AUTO_REVIEWER,
                reviewed_at=now,
                review_comment="the policy lets this action run without approval",
            )
        async with translate_errors("storing a proposed action"), self.db.engine.begin() as conn:
            repo = ActionRepository(conn)
            action = await repo.add(row)
            if action is not None:
                await audit.record(
                    conn, "actions.propose", _target(action.id, action), after=_summary(action)
                )
        if action is not None:
            await self.refresh_gauge()
        return action

    async def list(self, status: Status | None = None) -> list[Action]:
        """Newest first (the newest 500)."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"unknown status {status!r}: use {', '.join(STATUSES)}", field="status"
            )
        async with translate_errors("reading actions"), self.db.engine.connect() as conn:
            return await ActionRepository(conn).listing(status)

    async def get(self, action_id: int) -> Action:
        async with translate_errors("reading actions"), self.db.engine.connect() as conn:
            found = await ActionRepository(conn).get(action_id)
        if found is None:
            raise NotFound(f"no action {action_id}")
        return found

    async def approve(self, action_id: int, reviewer: str, comment: str | None = None) -> Action:
        return await self._decide(
            action_id, "approved", reviewer, _comment(comment, required=False)
        )

    async def reject(self, action_id: int, reviewer: str, comment: str | None) -> Action:
        return await self._decide(action_id, "rejected", reviewer, _comment(comment, required=True))

    async def _decide(
        self, action_id: int, status: Status, reviewer: str, comment: str | None
    ) -> Action:
        verb = "actions.approve" if status == "approved" else "actions.reject"
        now = datetime.now(UTC)
        decided: Action | None = None
        async with translate_errors("reviewing an action"), self.db.engine.begin() as conn:
            repo = ActionRepository(conn)
            current = await repo.get(action_id, for_update=True)
            if current is not None and current.status == "pending" and _expired(current, now):
                current = await self._expire(repo, current, now) or current
            refused = _refusal(action_id, current, reviewer)
            if refused is None:
                values = {
                    "status": status,
                    "reviewed_by": reviewer[:REVIEWER_MAX],
                    "reviewed_at": now,
                    "review_comment": comment,
                    "updated_at": now,
                }
                decided = await repo.move(action_id, ("pending",), values)
                if decided is None:  # another reviewer got there first (SQLite)
                    refused = Conflict(f"action {action_id} was reviewed meanwhile")
            after = (
                _summary(decided)
                if refused is None
                else {"refused": refused.message, "by": reviewer, "comment": comment}
            )
            await audit.record(
                conn,
                verb,
                _target(action_id, current),
                before=_summary(current),
                after=after,
                allowed=refused is None,
            )
        await self.refresh_gauge()
        if refused is not None:
            raise refused
        assert decided is not None
        return decided

    async def expire_due(self, now: datetime | None = None) -> builtins.list[Action]:
        """Move every pending proposal past its expires_at to ``expired``."""
        now = now or datetime.now(UTC)
        async with translate_errors("expiring actions"), self.db.engine.begin() as conn:
            repo = ActionRepository(conn)
            expired = [
                a
                for a in [await self._expire(repo, a, now) for a in await repo.due(now)]
                if a is not None
            ]
        if expired:
            await self.refresh_gauge()
        return expired

    @staticmethod
    async def _expire(repo: ActionRepository, action: Action, now: datetime) -> Action | None:
        moved = await repo.move(action.id, ("pending",), {"status": "expired", "updated_at": now})
        if moved is not None:
            await audit.record(
                repo.conn,
                "actions.expire",
                _target(action.id, action),
                before=_summary(action),
                after=_summary(moved),
            )
        return moved

    async def counts(self) -> dict[str, int]:
        """Actions per status, every status named (0 when none)."""
        async with translate_errors("counting actions"), self.db.engine.connect() as conn:
            found = await ActionRepository(conn).counts()
        return {status: found.get(status, 0) for status in STATUSES}

    async def refresh_gauge(self) -> None:
        """Set ``predictd_agent_actions``; a database that does not answer leaves it as it
        was (the change itself has committed)."""
        if self.metrics is None:
            return
        try:
            counts = await self.counts()
        except PredictdError as exc:
            log.warning("action counts not refreshed", extra={"error": exc.message})
            return
        for status, n in counts.items():
            self.metrics.agent_actions.labels(status=status).set(n)


def _refusal(action_id: int, current: Action | None, reviewer: str) -> PredictdError | None:
    """Why ``reviewer`` may not decide ``current`` now, if they may not."""
    if current is None:
        return NotFound(f"no action {action_id}")
    if current.status == "expired":
        when = _when(current.expires_at)
        return Conflict(f"action {action_id} expired at {when}: nothing was done")
    if current.status != "pending":
        return Conflict(
            f"action {action_id} is {current.status}: only a pending action can "
            "be approved or rejected"
        )
    if current.requested_by == reviewer:
        return Forbidden(
            f"action {action_id} was requested by {reviewer!r}: someone else must review it"
        )
    return None


def _expired(action: Action, now: datetime) -> bool:
    return action.expires_at is not None and action.expires_at <= now


def _when(ts: datetime | None) -> str:
    return ts.isoformat(timespec="seconds") if ts else "-"


def _summary(action: Action | None) -> dict[str, Any] | None:
    """What the audit log keeps of an action at one moment."""
    if action is None:
        return None
    return {
        "status": action.status,
        "model": action.model_name,
        "type": action.action_type,
        "version": action.model_version,
        "requested_by": action.requested_by,
        "reviewed_by": action.reviewed_by,
        "comment": action.review_comment,
    }
