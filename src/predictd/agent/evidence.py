"""All SQL of the planner: what the rules need to know, read with SQLAlchemy Core (the same
statements on SQLite and PostgreSQL) inside the connection the planner opened."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.agent.actions import OPEN_STATUSES
from predictd.agent.rules import OpenAlert, PastAction
from predictd.db.tables import agent_actions, alerts, feedback, predictions
from predictd.monitoring.repository.alerts import OPEN_STATUSES as OPEN_ALERT_STATUSES
from predictd.registry.models import ModelVersion
from predictd.registry.repository import ModelVersionRepository

# Actions about one candidate version, whose outcome counts however long ago it came.
CANDIDATE_ACTIONS = ("start_shadow", "promote_candidate")

# (candidate's answer, production's answer, true label, how many)
ShadowGroup = tuple[Any, Any, Any, int]
# (stored input, recorded answer, true label)
LabelledAnswer = tuple[Any, Any, Any]


class PlannerEvidence:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def models(self) -> list[tuple[ModelVersion, ModelVersion | None, ModelVersion | None]]:
        """(production, candidate, previous production) of each model with a production
        version. The candidate is the newest staging version (as servers pick it) or the
        newest unstaged version retrained from the current production version (`predictd
        train` registers candidates unstaged: start_shadow stages them), whichever is newer."""
        repo = ModelVersionRepository(self.conn)
        versions = await repo.list()
        production = {v.name: v for v in versions if v.stage == "production"}
        candidates: dict[str, ModelVersion] = {}
        for version in versions:  # by name, then version: the newest wins
            current = production.get(version.name)
            staged = version.stage == "staging"
            retrained = (
                version.stage == "none"
                and version.training_run is not None
                and current is not None
                and version.parent_version == current.version
            )
            if staged or retrained:
                candidates[version.name] = version
        return [
            (current, candidates.get(name), await repo.previous_production(name))
            for name, current in sorted(production.items())
        ]

    async def open_alerts(
        self, names: Collection[str], rules: Collection[str]
    ) -> dict[str, list[OpenAlert]]:
        """Active and acknowledged alerts of ``rules`` about ``names``, whenever opened."""
        a = alerts.c
        rows = await self.conn.execute(
            select(a.id, a.rule, a.model_name, a.severity, a.title, a.data, a.created_at)
            .where(a.status.in_(OPEN_ALERT_STATUSES), a.rule.in_(rules), a.model_name.in_(names))
            .order_by(a.id)
        )
        found: dict[str, list[OpenAlert]] = {}
        for row in rows:
            alert = OpenAlert(row.id, row.rule, row.model_name, row.severity, row.title,
                              row.data or {}, row.created_at)  # fmt: skip
            found.setdefault(alert.model_name, []).append(alert)
        return found

    async def actions(
        self, names: Collection[str], since: datetime, candidates: Collection[int]
    ) -> dict[str, list[PastAction]]:
        """The actions of ``names`` that can still block a proposal: open ones, those that
        changed since ``since`` (the longest cool-down), and every decided one about a
        candidate version in ``candidates``."""
        c = agent_actions.c
        rows = await self.conn.execute(
            select(c.model_name, c.action_type, c.model_version, c.status, c.updated_at, c.result)
            .where(
                c.model_name.in_(names),
                or_(
                    c.status.in_(OPEN_STATUSES),
                    c.updated_at >= since,
                    and_(c.action_type.in_(CANDIDATE_ACTIONS), c.model_version.in_(candidates)),
                ),
            )
            .order_by(c.id)
        )
        found: dict[str, list[PastAction]] = {}
        for row in rows:
            action = PastAction(row.action_type, row.model_version, row.status, row.updated_at,
                                row.result)  # fmt: skip
            found.setdefault(row.model_name, []).append(action)
        return found

    async def shadowed(self, name: str, version: int) -> bool:
        """Whether ``version`` has answered any request in shadow."""
        p = predictions.c
        query = select(p.id).where(
            p.model_name == name, p.model_version == version, p.variant == "shadow"
        )
        return (await self.conn.execute(query.limit(1))).first() is not None

    async def shadow_groups(self, name: str, candidate: int, production: int) -> list[ShadowGroup]:
        """The candidate's shadow answers beside production ``production``'s answers to the
        same requests, for every request with feedback (sent for the production answer's id,
        which the shadow row names in ``shadow_of``), counted per distinct triple."""
        shadow, answer = predictions.alias("shadow"), predictions.alias("answer")
        s, p, f = shadow.c, answer.c, feedback.c
        rows = await self.conn.execute(
            select(s.output, p.output, f.actual, func.count())
            .select_from(
                shadow.join(answer, p.id == s.shadow_of).join(
                    feedback, f.prediction_id == s.shadow_of
                )
            )
            .where(
                s.model_name == name,
                s.model_version == candidate,
                s.variant == "shadow",
                s.status == "ok",
                p.model_name == name,
                p.model_version == production,
                p.status == "ok",
            )
            .group_by(s.output, p.output, f.actual)
        )
        return [(mine, theirs, actual, int(n)) for mine, theirs, actual, n in rows]

    async def labelled_answers(
        self, name: str, version: int, since: datetime, limit: int
    ) -> Sequence[LabelledAnswer]:
        """The newest ``limit`` answers of ``version`` since ``since`` that have feedback
        (shadow and failed answers left out), with their stored inputs."""
        p, f = predictions.c, feedback.c
        rows = await self.conn.execute(
            select(p.input, p.output, f.actual)
            .select_from(predictions.join(feedback, f.prediction_id == p.id))
            .where(
                p.model_name == name,
                p.model_version == version,
                p.variant != "shadow",
                p.status == "ok",
                p.ts >= since,
            )
            .order_by(p.ts.desc())
            .limit(limit)
        )
        return [(stored, output, actual) for stored, output, actual in rows]
