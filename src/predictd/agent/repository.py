"""All SQL on agent_actions. One open action per model and type, and one executor per
action, are the database's to enforce: the unique partial index, and a claim that is either a
``FOR UPDATE SKIP LOCKED`` row (PostgreSQL) or a guarded update whose row count says who won
(SQLite, which serialises writers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.agent.actions import Action, Status
from predictd.db.tables import agent_actions as aa

LIST_LIMIT = 500


def _action(row: Row[Any]) -> Action:
    data = dict(row._mapping)
    data["parameters"] = dict(data["parameters"] or {})
    data["evidence"] = dict(data["evidence"] or {})
    return Action(**data)


def claimable(now: datetime) -> ColumnElement[bool]:
    """Approved, or running under a lease that ran out (its executor stopped mid-way)."""
    return or_(
        aa.c.status == "approved",
        and_(aa.c.status == "running", aa.c.lease_expires_at < now),
    )


class ActionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, row: Mapping[str, Any]) -> Action | None:
        """The stored action; None when an open one of its type for its model exists (the
        unique index refused this one, in a savepoint, so the transaction goes on)."""
        try:
            async with self.conn.begin_nested():
                result = await self.conn.execute(aa.insert().values(**row).returning(*aa.c))
        except IntegrityError:
            return None
        return _action(result.one())

    async def get(self, action_id: int, *, for_update: bool = False) -> Action | None:
        query = select(aa).where(aa.c.id == action_id)
        if for_update:
            query = query.with_for_update()  # PostgreSQL; SQLite's writer lock covers it
        row = (await self.conn.execute(query)).first()
        return None if row is None else _action(row)

    async def listing(self, status: Status | None, limit: int = LIST_LIMIT) -> list[Action]:
        """Newest first."""
        query = select(aa).order_by(aa.c.created_at.desc(), aa.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(aa.c.status == status)
        return [_action(row) for row in await self.conn.execute(query)]

    async def move(
        self, action_id: int, allowed: Sequence[Status], values: Mapping[str, Any]
    ) -> Action | None:
        """Set ``values`` if the action is still in one of the ``allowed`` statuses; the
        action as it now is, or None when it had moved on."""
        result = await self.conn.execute(
            update(aa)
            .where(aa.c.id == action_id, aa.c.status.in_(allowed))
            .values(**values)
            .returning(*aa.c)
        )
        row = result.first()
        return None if row is None else _action(row)

    async def due(self, now: datetime) -> list[Action]:
        """Pending proposals whose time ran out."""
        query = select(aa).where(aa.c.status == "pending", aa.c.expires_at <= now)
        return [_action(row) for row in await self.conn.execute(query.order_by(aa.c.id))]

    async def claimable_ids(self, now: datetime, limit: int) -> list[int]:
        query = select(aa.c.id).where(claimable(now)).order_by(aa.c.id).limit(limit)
        return [int(i) for i in (await self.conn.execute(query)).scalars()]

    async def lock_one_claimable(self, now: datetime) -> int | None:
        """PostgreSQL: the oldest claimable action, row-locked for this transaction; rows
        another executor holds are skipped, not waited for."""
        query = (
            select(aa.c.id)
            .where(claimable(now))
            .order_by(aa.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        found = (await self.conn.execute(query)).scalar()
        return None if found is None else int(found)

    async def claim(
        self, action_id: int, now: datetime, owner: str, lease_until: datetime
    ) -> Action | None:
        """Mark the action running under ``owner``'s lease if it is still claimable; None
        when another executor got it first."""
        result = await self.conn.execute(
            update(aa)
            .where(aa.c.id == action_id, claimable(now))
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=lease_until,
                attempts=aa.c.attempts + 1,
                executed_at=func.coalesce(aa.c.executed_at, now),
                updated_at=now,
            )
            .returning(*aa.c)
        )
        row = result.first()
        return None if row is None else _action(row)

    async def extend_lease(self, action_id: int, owner: str, until: datetime) -> bool:
        """Push the lease out while the action still runs under ``owner``."""
        result = await self.conn.execute(
            update(aa)
            .where(aa.c.id == action_id, aa.c.status == "running", aa.c.lease_owner == owner)
            .values(lease_expires_at=until)
        )
        return result.rowcount == 1

    async def finish(self, action_id: int, owner: str, values: Mapping[str, Any]) -> Action | None:
        """Record the outcome if ``owner`` still holds the action (None: its lease ran out
        and another executor took it over)."""
        result = await self.conn.execute(
            update(aa)
            .where(aa.c.id == action_id, aa.c.status == "running", aa.c.lease_owner == owner)
            .values(**values, lease_expires_at=None)
            .returning(*aa.c)
        )
        row = result.first()
        return None if row is None else _action(row)

    async def release(self, action_id: int, owner: str) -> bool:
        """Hand a running action back (approved, no lease) for another executor to take at
        once: this one is shutting down. Its claim is not counted against it."""
        result = await self.conn.execute(
            update(aa)
            .where(aa.c.id == action_id, aa.c.status == "running", aa.c.lease_owner == owner)
            .values(
                status="approved",
                lease_owner=None,
                lease_expires_at=None,
                attempts=aa.c.attempts - 1,
            )
        )
        return result.rowcount == 1

    async def counts(self) -> dict[str, int]:
        rows = await self.conn.execute(select(aa.c.status, func.count()).group_by(aa.c.status))
        return {str(status): int(n) for status, n in rows}
