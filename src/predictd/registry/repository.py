"""All SQL on model_versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tables import model_versions as mv
from predictd.registry.models import ModelVersion


def _from_row(row: Row[Any]) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        flavor=row.flavor,
        task=row.task,
        input_kind=row.input_kind,
        artifact_uri=row.artifact_uri,
        artifact_sha256=row.artifact_sha256,
        stage=row.stage,
        created_at=row.created_at,
        feature_names=tuple(row.feature_names or ()),
        classes=tuple(row.classes or ()),
        algorithm=row.algorithm,
        metrics=dict(row.metrics or {}),
        training_samples=row.training_samples,
        description=row.description,
        promoted_at=row.promoted_at,
        hyperparameters=dict(row.hyperparameters or {}),
        tags=dict(row.tags or {}),
        parent_version=row.parent_version,
        reference_profile=dict(row.reference_profile or {}),
        training_data=row.training_data,
        validation_data=row.validation_data,
        training_run=row.training_run,
    )


class ModelVersionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def production(self, name: str | None) -> ModelVersion | None:
        query = select(mv).where(mv.c.stage == "production")
        if name is not None:
            query = query.where(mv.c.name == name)
        row = (await self.conn.execute(query.order_by(mv.c.name).limit(1))).first()
        return _from_row(row) if row else None

    async def serving(self, names: list[str] | None) -> list[ModelVersion]:
        """Production and staging versions (of ``names``, or of every model name)."""
        query = select(mv).where(mv.c.stage.in_(("production", "staging")))
        if names:
            query = query.where(mv.c.name.in_(names))
        return [_from_row(r) for r in await self.conn.execute(query.order_by(mv.c.version))]

    async def by_sha(self, name: str, sha256: str) -> ModelVersion | None:
        query = (
            select(mv)
            .where(mv.c.name == name, mv.c.artifact_sha256 == sha256)
            .order_by(mv.c.version.desc())
            .limit(1)
        )
        row = (await self.conn.execute(query)).first()
        return _from_row(row) if row else None

    async def get(self, name: str, version: int) -> ModelVersion | None:
        query = select(mv).where(mv.c.name == name, mv.c.version == version)
        row = (await self.conn.execute(query)).first()
        return _from_row(row) if row else None

    async def list(self, name: str | None = None) -> list[ModelVersion]:
        query = select(mv).order_by(mv.c.name, mv.c.version)
        if name is not None:
            query = query.where(mv.c.name == name)
        return [_from_row(r) for r in await self.conn.execute(query)]

    async def lock_name(self, name: str) -> None:
        """Serialise lifecycle changes of one model name (PostgreSQL row locks; SQLite
        serialises writers itself). A second promotion waits, then sees the first's result."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(select(mv.c.id).where(mv.c.name == name).with_for_update())

    async def previous_production(self, name: str) -> ModelVersion | None:
        """The most recently promoted version that is no longer production."""
        query = (
            select(mv)
            .where(mv.c.name == name, mv.c.stage == "archived", mv.c.promoted_at.is_not(None))
            .order_by(mv.c.promoted_at.desc())
            .limit(1)
        )
        row = (await self.conn.execute(query)).first()
        return _from_row(row) if row else None

    async def set_stage(self, name: str, version: int, stage: str) -> None:
        await self.conn.execute(
            update(mv).where(mv.c.name == name, mv.c.version == version).values(stage=stage)
        )

    async def next_version(self, name: str) -> int:
        query = select(func.coalesce(func.max(mv.c.version), 0)).where(mv.c.name == name)
        return int((await self.conn.execute(query)).scalar_one()) + 1

    async def add(self, version: ModelVersion) -> None:
        values = version.to_json() | {
            "created_at": version.created_at,
            "promoted_at": version.promoted_at,
            "feature_names": list(version.feature_names),
            "classes": list(version.classes),
        }
        await self.conn.execute(insert(mv).values(**values))

    async def promote(self, name: str, version: int) -> None:
        """Archive the current production version and promote ``version``. Call inside the
        caller's transaction, after ``lock_name``: the archive must come first, since the
        database allows one production version per name."""
        now = datetime.now(UTC)
        await self.conn.execute(
            update(mv)
            .where(mv.c.name == name, mv.c.stage == "production", mv.c.version != version)
            .values(stage="archived")
        )
        await self.conn.execute(
            update(mv)
            .where(mv.c.name == name, mv.c.version == version)
            .values(stage="production", promoted_at=now)
        )
