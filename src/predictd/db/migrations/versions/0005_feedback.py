"""feedback: ground truth for recorded predictions, joined by prediction id

Feedback may arrive before its prediction row is written (the recorder ships asynchronously),
so there is deliberately no foreign key: the join happens when performance is computed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.Uuid(as_uuid=True), nullable=False),
        sa.Column("actual", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revisions", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_received_at", table_name="feedback")
    op.drop_table("feedback")
