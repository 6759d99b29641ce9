"""registry: hyperparameters, tags, lineage, reference profile; one production per name

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JsonValue = sa.JSON().with_variant(JSONB(), "postgresql")
PRODUCTION = sa.text("stage = 'production'")


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("hyperparameters", JsonValue))
        batch.add_column(sa.Column("tags", JsonValue))
        batch.add_column(sa.Column("parent_version", sa.Integer()))
        batch.add_column(sa.Column("reference_profile", JsonValue))
    # The database itself guarantees at most one production version per name.
    op.create_index(
        "uq_model_versions_production",
        "model_versions",
        ["name"],
        unique=True,
        postgresql_where=PRODUCTION,
        sqlite_where=PRODUCTION,
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_production", table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("reference_profile")
        batch.drop_column("parent_version")
        batch.drop_column("tags")
        batch.drop_column("hyperparameters")
