"""All SQL on alerts; at most one open alert per rule and model is the database's to enforce."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.access import audit
from predictd.db.tables import alerts

OPEN_STATUSES = ("active", "acknowledged")


class AlertRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def open_alert(self, rule: str, model: str) -> dict[str, Any] | None:
        row = (
            await self.conn.execute(
                select(alerts).where(
                    alerts.c.rule == rule,
                    alerts.c.model_name == model,
                    alerts.c.status.in_(OPEN_STATUSES),
                )
            )
        ).first()
        return None if row is None else dict(row._mapping)

    async def open(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """The alert opened, with its id; None when another replica opened the same rule and
        model a moment ago (the unique index refused this one)."""
        try:
            async with self.conn.begin_nested():
                result = await self.conn.execute(alerts.insert().values(**row))
        except IntegrityError:
            return None
        key = result.inserted_primary_key
        return {"id": key[0] if key else None, **row}

    async def update(self, alert_id: int, values: Mapping[str, Any]) -> None:
        await self.conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    async def get(self, alert_id: int) -> dict[str, Any] | None:
        row = (await self.conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
        return None if row is None else dict(row._mapping)

    async def list(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; ``status`` "open" means active or acknowledged."""
        query = select(alerts).order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
        if status == "open":
            query = query.where(alerts.c.status.in_(OPEN_STATUSES))
        elif status is not None:
            query = query.where(alerts.c.status == status)
        return [dict(row._mapping) for row in await self.conn.execute(query.limit(limit))]

    async def active_counts(self) -> dict[tuple[str, str], int]:
        rows = await self.conn.execute(
            select(alerts.c.rule, alerts.c.severity, func.count())
            .where(alerts.c.status.in_(OPEN_STATUSES))
            .group_by(alerts.c.rule, alerts.c.severity)
        )
        return {(rule, severity): int(n) for rule, severity, n in rows}

    async def audit(
        self, action: str, target: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> None:
        """A person's change to an alert, in the audit log, in the change's transaction."""
        await audit.record(self.conn, action, target, before=before, after=after)
