"""performance_metrics: realised and estimated performance per model version and window

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    dt = sa.DateTime(timezone=True)
    op.create_table(
        "performance_metrics",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("task", sa.String(20), nullable=False),
        sa.Column("window_start", dt, nullable=False),
        sa.Column("window_end", dt, nullable=False),
        sa.Column("computed_at", dt, nullable=False),
        sa.Column("predictions", sa.BigInteger, nullable=False),
        sa.Column("labelled", sa.BigInteger, nullable=False),
        sa.Column("metrics", json),
        sa.Column("estimated", json),
        sa.PrimaryKeyConstraint("id", name="pk_performance_metrics"),
    )
    op.create_index(
        "ix_performance_metrics_model_name",
        "performance_metrics",
        ["model_name", "model_version", "computed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_performance_metrics_model_name", table_name="performance_metrics")
    op.drop_table("performance_metrics")
