"""model_versions.training_data, validation_data and training_run: what a version was fitted
and checked on (stored content-addressed beside the artifact), and how a retrain made it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ("training_data", "validation_data", "training_run")


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON().with_variant(JSONB(), "postgresql")))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
