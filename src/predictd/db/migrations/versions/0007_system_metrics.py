"""system_metrics: periodic samples of the server's own health, one row per value

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "system_metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("labels", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_system_metrics"),
    )
    op.create_index("ix_system_metrics_name", "system_metrics", ["name", "ts"])
    op.create_index("ix_system_metrics_ts", "system_metrics", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_system_metrics_ts", table_name="system_metrics")
    op.drop_index("ix_system_metrics_name", table_name="system_metrics")
    op.drop_table("system_metrics")
