"""prediction_rollups_hourly: the minute rollups summed per hour, for long windows

Filled from the minute rollups already there, by the database.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

HISTOGRAM = [f"latency_h{i:02d}" for i in range(21)] + [f"confidence_h{i}" for i in range(10)]
SUMS = ["count", "errors", "cache_hits", "confidence_count", "confidence_sum", "latency_sum"]
KEYS = ["model_name", "model_version", "variant", "label"]


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
    ]


def upgrade() -> None:
    op.create_table(
        "prediction_rollups_hourly",
        *_columns(),
        sa.PrimaryKeyConstraint(
            *("bucket", "model_name", "model_version", "variant", "label"),
            name="pk_prediction_rollups_hourly",
        ),
    )
    op.create_index(
        "ix_prediction_rollups_hourly_model_bucket",
        "prediction_rollups_hourly",
        ["model_name", "model_version", "bucket"],
    )
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', bucket, 'UTC')"
    else:  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff'
        hour = "strftime('%Y-%m-%d %H:00:00.000000', bucket)"
    summed = ", ".join(f'SUM("{c}")' for c in SUMS + HISTOGRAM)
    columns = ", ".join(f'"{c}"' for c in SUMS + HISTOGRAM)
    keys = ", ".join(KEYS)
    op.execute(
        f"INSERT INTO prediction_rollups_hourly (bucket, {keys}, {columns}, first_ts, last_ts) "
        f"SELECT {hour}, {keys}, {summed}, MIN(first_ts), MAX(last_ts) "
        f"FROM prediction_rollups GROUP BY {hour}, {keys}"
    )


def downgrade() -> None:
    op.drop_index(
        "ix_prediction_rollups_hourly_model_bucket", table_name="prediction_rollups_hourly"
    )
    op.drop_table("prediction_rollups_hourly")
