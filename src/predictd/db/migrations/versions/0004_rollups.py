"""prediction_rollups: per-minute sums that analytics read instead of scanning predictions

The table is filled from the predictions already recorded, in chunks and with the recorder's own
rollup code (imported, not frozen), so old and new minutes are summed alike.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The table as this revision creates it, frozen: later changes to the app's tables must not
# change it.
BOUNDS = 20
HISTOGRAM = [f"latency_h{i:02d}" for i in range(BOUNDS + 1)]
CONFIDENCE = [f"confidence_h{i}" for i in range(10)]
BACKFILL_CHUNK = 50_000


def _columns() -> list[Any]:
    dt = sa.DateTime(timezone=True)
    return [
        sa.Column("bucket", dt, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("variant", sa.String(20), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("cache_hits", sa.BigInteger, nullable=False),
        sa.Column("confidence_count", sa.BigInteger, nullable=False),
        sa.Column("confidence_sum", sa.Float, nullable=False),
        sa.Column("latency_sum", sa.Float, nullable=False),
        sa.Column("first_ts", dt, nullable=False),
        sa.Column("last_ts", dt, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in HISTOGRAM),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in CONFIDENCE),
    ]


def upgrade() -> None:
    op.create_table(
        "prediction_rollups",
        *_columns(),
        sa.PrimaryKeyConstraint(
            *("bucket", "model_name", "model_version", "variant", "label"),
            name="pk_prediction_rollups",
        ),
    )
    op.create_index(
        "ix_prediction_rollups_model_bucket",
        "prediction_rollups",
        ["model_name", "model_version", "bucket"],
    )
    _backfill()


def _backfill() -> None:
    """Sum the predictions recorded before this revision, keyset-paged by id."""
    from predictd.db.tables import prediction_rollups, predictions
    from predictd.recording.record import COLUMNS, PredictionRecord
    from predictd.recording.rollups import Rollup, RollupKey, rollup, rows_of

    bind = op.get_bind()
    p = predictions
    wanted = [p.c[name] for name in COLUMNS]
    totals: dict[RollupKey, Rollup] = {}
    last = None
    while True:
        query = sa.select(*wanted).order_by(p.c.id).limit(BACKFILL_CHUNK)
        if last is not None:
            query = query.where(p.c.id > last)
        rows = bind.execute(query).all()
        if not rows:
            break
        rollup((PredictionRecord(*row) for row in rows), into=totals)
        last = rows[-1].id
    if totals:
        bind.execute(sa.insert(prediction_rollups), rows_of(totals))


def downgrade() -> None:
    op.drop_index("ix_prediction_rollups_model_bucket", table_name="prediction_rollups")
    op.drop_table("prediction_rollups")
