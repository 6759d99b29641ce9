"""drift_reports: per-feature drift of a version's recent inputs against its reference

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = sa.DateTime(timezone=True)
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("window_start", dt, nullable=False),
        sa.Column("window_end", dt, nullable=False),
        sa.Column("computed_at", dt, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("drift_detected", sa.Boolean, nullable=False),
        sa.Column("features", json),
        sa.Column("outputs", json),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
    )
    op.create_index(
        "ix_drift_reports_model_name",
        "drift_reports",
        ["model_name", "model_version", "computed_at"],
    )
    op.create_index("ix_drift_reports_computed_at", "drift_reports", ["computed_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_reports_computed_at", table_name="drift_reports")
    op.drop_index("ix_drift_reports_model_name", table_name="drift_reports")
    op.drop_table("drift_reports")
