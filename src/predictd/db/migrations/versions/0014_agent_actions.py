"""agent_actions: what the remediation agent proposes, who decided, and how it ran

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OPEN = sa.text("status IN ('pending', 'approved', 'running')")


def upgrade() -> None:
    dt = sa.DateTime(timezone=True)
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    op.create_table(
        "agent_actions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("action_type", sa.String(30), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("parameters", json, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", json),
        sa.Column("source_alert_id", sa.Integer),
        sa.Column("risk", sa.String(10), nullable=False),
        sa.Column("requires_approval", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("created_at", dt, nullable=False),
        sa.Column("updated_at", dt, nullable=False),
        sa.Column("expires_at", dt),
        sa.Column("reviewed_by", sa.String(200)),
        sa.Column("reviewed_at", dt),
        sa.Column("review_comment", sa.Text),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", dt),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("executed_at", dt),
        sa.Column("finished_at", dt),
        sa.Column("result", json),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_agent_actions"),
    )
    op.create_index(
        "uq_agent_actions_open", "agent_actions", ["model_name", "action_type"], unique=True,
        postgresql_where=OPEN, sqlite_where=OPEN,
    )  # fmt: skip
    op.create_index("ix_agent_actions_status", "agent_actions", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_actions_status", table_name="agent_actions")
    op.drop_index("uq_agent_actions_open", table_name="agent_actions")
    op.drop_table("agent_actions")
