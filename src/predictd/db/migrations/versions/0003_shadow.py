"""predictions.shadow_of: a shadow prediction points at the production answer it mirrors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SHADOWS = sa.text("shadow_of IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("shadow_of", sa.Uuid(as_uuid=True)))
    # Only shadow rows carry it, so the index stays as small as the shadow traffic.
    op.create_index(
        "ix_predictions_shadow_of",
        "predictions",
        ["shadow_of"],
        postgresql_where=SHADOWS,
        sqlite_where=SHADOWS,
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_shadow_of", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("shadow_of")
