"""prediction_rollups: per-minute sums that analytics read instead of scanning predictions

The table is filled from the predictions already recorded, in chunks, by a copy of the recorder's
rollup code as it was at this revision (frozen, like the tables: a later change to the live code
must not change what this revision did), so old and new minutes are summed alike.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The table as this revision creates it, frozen: later changes to the app's tables must not
# change it.
LATENCY_BOUNDS_MS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000,
)  # fmt: skip
BOUNDS = len(LATENCY_BOUNDS_MS)
HISTOGRAM = [f"latency_h{i:02d}" for i in range(BOUNDS + 1)]
CONFIDENCE_BINS = 10
CONFIDENCE = [f"confidence_h{i}" for i in range(CONFIDENCE_BINS)]
KEYS = ("bucket", "model_name", "model_version", "variant", "label")
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
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    predictions = sa.table(
        "predictions",
        *(sa.column(name) for name in ("id", "model_name", "model_version", "variant")),
        *(sa.column(name) for name in ("confidence", "latency_ms", "cache_hit", "status")),
        sa.column("ts", sa.DateTime(timezone=True)),
        sa.column("output", json),
        sa.column("probabilities", json),
    )
    rollups = sa.table(
        "prediction_rollups",
        *(sa.column(c.name, c.type) for c in _columns()),
    )
    p = predictions.c
    bind = op.get_bind()
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    last = None
    while True:
        query = sa.select(predictions).order_by(p.id).limit(BACKFILL_CHUNK)
        if last is not None:
            query = query.where(p.id > last)
        rows = bind.execute(query).all()
        if not rows:
            break
        for row in rows:
            _add(totals, row)
        last = rows[-1].id
    if totals:
        bind.execute(sa.insert(rollups), [totals[key] for key in sorted(totals)])


def _label(output: Any, probabilities: Any) -> str:
    if isinstance(output, str | bool | int) or (
        isinstance(output, float) and probabilities is not None
    ):
        return orjson.dumps(output).decode()
    return ""


def _add(totals: dict[tuple[Any, ...], dict[str, Any]], row: Any) -> None:
    ts: datetime = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=UTC)
    ok = row.status == "ok"
    label = _label(row.output, row.probabilities) if ok else ""
    key = (ts.replace(second=0, microsecond=0), row.model_name, row.model_version, row.variant,
           label)  # fmt: skip
    acc = totals.get(key)
    if acc is None:
        acc = totals[key] = {
            **dict(zip(KEYS, key, strict=True)),
            **dict.fromkeys(("count", "errors", "cache_hits", "confidence_count"), 0),
            **dict.fromkeys(("confidence_sum", "latency_sum"), 0.0),
            **dict.fromkeys(HISTOGRAM + CONFIDENCE, 0),
            "first_ts": ts,
            "last_ts": ts,
        }
    acc["first_ts"], acc["last_ts"] = min(acc["first_ts"], ts), max(acc["last_ts"], ts)
    if not ok:
        acc["errors"] += 1
        return
    acc["count"] += 1
    acc["cache_hits"] += int(row.cache_hit)
    if row.confidence is not None:
        acc["confidence_count"] += 1
        acc["confidence_sum"] += row.confidence
        decile = min(CONFIDENCE_BINS - 1, max(0, int(row.confidence * CONFIDENCE_BINS)))
        acc[CONFIDENCE[decile]] += 1
    acc["latency_sum"] += row.latency_ms
    acc[HISTOGRAM[bisect.bisect_left(LATENCY_BOUNDS_MS, row.latency_ms)]] += 1


def downgrade() -> None:
    op.drop_index("ix_prediction_rollups_model_bucket", table_name="prediction_rollups")
    op.drop_table("prediction_rollups")
