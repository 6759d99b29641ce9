"""The executor: runs approved actions, each exactly once however many replicas race for it.

An executor claims an action by moving it to ``running`` under a lease (its owner id and an
expiry, PREDICTD_AGENT_LEASE_S ahead), which it keeps extending while the handler works. On
PostgreSQL the claim locks the row with ``FOR UPDATE SKIP LOCKED``, so racing replicas each
take a different one; on SQLite a guarded update does it (one writer at a time: a row count of
1 wins). A replica that dies mid-action stops extending its lease; once the lease runs out,
another executor takes the action over (``attempts`` counts the claims) and runs its handler
again, which is safe because handlers are idempotent. After ``MAX_ATTEMPTS`` claims the action
fails instead of being retried for ever. An executor stopped cleanly (the server shutting down)
hands its action back at once instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.access import audit
from predictd.agent.actions import Action, ActionType
from predictd.agent.handlers import HANDLERS, Handler, Toolbox
from predictd.agent.repository import ActionRepository
from predictd.agent.service import ActionService, action_json
from predictd.agent.webhook import ActionWebhook
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.observability import describe_error
from predictd.registry.service import ModelRegistry
from predictd.settings import AgentSettings, RetrainingSettings

log = logging.getLogger("predictd.agent")

MAX_ATTEMPTS = 3
ERROR_MAX = 4000  # characters of an error kept in the row
RELEASE_S = 3.0  # longest a stopping executor spends handing its action back


def replica_id() -> str:
    """hostname:pid:random, unique per executor."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(exc: BaseException) -> str:
    """The error text stored and sent to the webhook (credentials taken out)."""
    return describe_error(exc, ERROR_MAX)


@dataclass
class _Lease:
    task: asyncio.Task[Any] | None = None
    lost: bool = False


class Executor:
    def __init__(
        self,
        db: Database,
        registry: ModelRegistry,
        settings: AgentSettings,
        retraining: RetrainingSettings,
        webhook_url: str | None,
        *,
        actions: ActionService | None = None,
        handlers: Mapping[ActionType, Handler] = HANDLERS,
    ) -> None:
        self.db = db
        self.settings = settings
        self.actions = actions or ActionService(db)
        self.webhook = ActionWebhook(webhook_url)
        self.tools = Toolbox(db, registry, retraining, self.webhook)
        self.handlers = handlers
        self.owner = replica_id()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_s)

    async def claim(self) -> Action | None:
        """One approved (or abandoned) action, now running under this executor's lease."""
        now = datetime.now(UTC)
        async with translate_errors("claiming an action"):
            if self.db.dialect == "postgresql":
                async with self.db.engine.begin() as conn:
                    repo = ActionRepository(conn)
                    found = await repo.lock_one_claimable(now)
                    if found is None:
                        return None
                    return await self._claim(repo, found, now)
            async with self.db.engine.connect() as conn:
                candidates = await ActionRepository(conn).claimable_ids(now, limit=20)
            for action_id in candidates:
                async with self.db.engine.begin() as conn:
                    won = await self._claim(ActionRepository(conn), action_id, now)
                if won is not None:
                    return won
        return None

    async def _claim(self, repo: ActionRepository, action_id: int, now: datetime) -> Action | None:
        won = await repo.claim(action_id, now, self.owner, now + self.lease)
        if won is not None:
            with audit.acting_as(_actor(won)):
                await audit.record(
                    repo.conn,
                    "actions.run",
                    f"action {won.id}",
                    after={"attempt": won.attempts, "owner": self.owner},
                )
        return won

    async def execute(self, action: Action) -> Action | None:
        """Run a claimed action's handler and record its outcome; None when the lease was
        lost meanwhile (another executor has the action now)."""
        handler = self.handlers.get(action.action_type)
        result: dict[str, Any] | None = None
        error: str | None = None
        if action.attempts > MAX_ATTEMPTS:
            error = (
                f"gave up after {MAX_ATTEMPTS} attempts: each executor that ran it "
                "stopped before finishing"
            )
        elif handler is None:
            error = f"no handler for action type {action.action_type!r}"
        else:
            with audit.acting_as(_actor(action)):
                lease = _Lease()
                try:
                    async with self._leased(action, lease):
                        result = await handler(self.tools, action)
                except asyncio.CancelledError:
                    if lease.lost and lease.task is not None and lease.task.uncancel() == 0:
                        # another executor owns the action now: stop here, record nothing
                        log.warning("action stopped: its lease was lost",
                                    extra={"action": action.id})  # fmt: skip
                        return None
                    await self._release(action)
                    raise
                except Exception as exc:
                    error = describe(exc)
                    log.warning(
                        "action failed",
                        extra={"action": action.id, "type": action.action_type, "error": error},
                    )
        finished = await self._finish(action, result, error)
        if finished is not None and finished.status == "failed":
            await self.webhook.tell({"event": "action_failed", "action": action_json(finished)})
        return finished

    @contextlib.asynccontextmanager
    async def _leased(self, action: Action, lease: _Lease) -> AsyncIterator[None]:
        """Keep the lease alive while the handler runs; once it is lost (the database was
        away longer than the lease, and another executor took the action over), the handler
        is cancelled, so two executors never do an action's work side by side."""
        lease.task = asyncio.current_task()

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.settings.lease_s / 3)
                try:
                    async with self.db.engine.begin() as conn:
                        until = datetime.now(UTC) + self.lease
                        kept = await ActionRepository(conn).extend_lease(
                            action.id, self.owner, until
                        )
                    if not kept:
                        lease.lost = True
                        if lease.task is not None:
                            lease.task.cancel()
                        return
                except Exception as exc:
                    log.warning(
                        "lease not renewed", extra={"action": action.id, "error": repr(exc)}
                    )

        heartbeat = asyncio.create_task(renew())
        try:
            yield
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _release(self, action: Action) -> None:
        """Shutting down mid-action: hand it back now rather than leave it to its lease
        (bounded, so a database away cannot hold shutdown; the lease covers that case)."""
        try:
            async with asyncio.timeout(RELEASE_S), self.db.engine.begin() as conn:
                await ActionRepository(conn).release(action.id, self.owner)
        except Exception as exc:
            log.warning("action not handed back; its lease will expire", extra={
                        "action": action.id, "error": repr(exc)})  # fmt: skip

    async def _finish(
        self, action: Action, result: dict[str, Any] | None, error: str | None
    ) -> Action | None:
        now = datetime.now(UTC)
        values = {
            "status": "failed" if error is not None else "succeeded",
            "result": result,
            "error": error,
            "finished_at": now,
            "updated_at": now,
        }
        async with (
            translate_errors("recording an action's outcome"),
            self.db.engine.begin() as conn,
        ):
            done = await ActionRepository(conn).finish(action.id, self.owner, values)
            if done is not None:
                with audit.acting_as(_actor(action)):
                    await audit.record(
                        conn,
                        f"actions.{done.status}",
                        f"action {action.id}",
                        after={"result": result, "error": error},
                    )
        if done is None:
            log.warning(
                "action outcome not recorded: its lease ran out and another executor took it over",
                extra={"action": action.id},
            )
        return done

    async def run_once(self, limit: int = 100) -> list[Action]:
        """Claim and execute approved actions, one at a time, until none is left (or
        ``limit`` ran); the finished actions."""
        finished: list[Action] = []
        for _ in range(limit):
            action = await self.claim()
            if action is None:
                break
            done = await self.execute(action)
            if done is not None:
                finished.append(done)
        return finished

    async def tick(self) -> list[Action]:
        """One pass of the schedule: expire overdue proposals, execute approved actions,
        refresh the gauge."""
        await self.actions.expire_due()
        finished = await self.run_once()
        await self.actions.refresh_gauge()
        return finished

    async def forever(self, interval_s: float) -> None:
        """The in-server schedule: a failed pass (database away) is logged and retried."""
        while True:
            try:
                for action in await self.tick():
                    log.info(
                        "action finished",
                        extra={
                            "action": action.id,
                            "type": action.action_type,
                            "status": action.status,
                        },
                    )
            except Exception as exc:
                log.warning("agent executor pass failed", extra={"error": repr(exc)})
            await asyncio.sleep(interval_s)


def _actor(action: Action) -> audit.Actor:
    """Who the audit log names for what an executor does: the action, whose row says who
    requested and who approved it."""
    return audit.Actor(f"agent:action:{action.id}", "approve")
