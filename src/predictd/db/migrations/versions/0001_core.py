"""predictions and model_versions

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JsonValue = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("batch_id", sa.Uuid()),
        sa.Column("input", JsonValue),
        sa.Column("output", JsonValue),
        sa.Column("confidence", sa.Float()),
        sa.Column("probabilities", JsonValue),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("user_agent", sa.String(512)),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_ts", "predictions", ["ts"], postgresql_using="brin")
    op.create_index("ix_predictions_model_ts", "predictions", ["model_name", "model_version", "ts"])
    op.create_index(
        "ix_predictions_batch_id",
        "predictions",
        ["batch_id"],
        postgresql_where=sa.text("batch_id IS NOT NULL"),
        sqlite_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(50), nullable=False),
        sa.Column("algorithm", sa.String(200)),
        sa.Column("task", sa.String(20), nullable=False),
        sa.Column("input_kind", sa.String(20), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("feature_names", JsonValue),
        sa.Column("classes", JsonValue),
        sa.Column("metrics", JsonValue),
        sa.Column("training_samples", sa.Integer()),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    )


def downgrade() -> None:
    op.drop_table("model_versions")
    op.drop_index("ix_predictions_batch_id", table_name="predictions")
    op.drop_index("ix_predictions_model_ts", table_name="predictions")
    op.drop_index("ix_predictions_ts", table_name="predictions")
    op.drop_table("predictions")
