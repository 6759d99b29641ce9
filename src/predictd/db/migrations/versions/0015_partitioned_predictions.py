"""predictions range-partitioned by time on PostgreSQL (SQLite: unchanged)

The table is rebuilt as `PARTITION BY RANGE (ts)` with monthly partitions covering its rows
and the next three months, plus a default partition, and every row is copied across. The
primary key becomes (id, ts): PostgreSQL requires the partition key in every unique index.
A prediction's id and ts are fixed when it is answered, so a replayed record still collides
with its row and is still written once.

Locks: the old table is locked ACCESS EXCLUSIVE for the whole copy, so inserts wait (the
recorder keeps answering and spools; it ships after the commit) and reads of `predictions`
wait too. docs: README "PostgreSQL", time per million rows in benchmarks/RESULTS.md part H.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from predictd.db.partitions import DEFAULT, Partition, planned

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3
_INDEXES = (
    "CREATE INDEX ix_predictions_ts ON predictions USING brin (ts)",
    "CREATE INDEX ix_predictions_model_ts ON predictions (model_name, model_version, ts)",
    "CREATE INDEX ix_predictions_batch_id ON predictions (batch_id) WHERE batch_id IS NOT NULL",
    "CREATE INDEX ix_predictions_shadow_of ON predictions (shadow_of) WHERE shadow_of IS NOT NULL",
)
_OLD_INDEXES = (
    "ix_predictions_ts",
    "ix_predictions_model_ts",
    "ix_predictions_batch_id",
    "ix_predictions_shadow_of",
)


def _set_aside(old: str) -> None:
    """Rename the table, its key and its indexes, so the new ones can take their names."""
    op.execute(f"ALTER TABLE predictions RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_predictions TO pk_{old}")
    for index in _OLD_INDEXES:
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_{old}")


def _months(bind: sa.Connection, old: str) -> list[Partition]:
    low = bind.execute(sa.text(f"SELECT min(ts) FROM {old}")).scalar()
    now = datetime.now(UTC)
    start = min(low, now) if low is not None else now
    months = 0
    cursor = start
    while (cursor.year, cursor.month) < (now.year, now.month):
        months += 1
        cursor = datetime(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1, tzinfo=UTC)
    return planned([], "month", start, months + MONTHS_AHEAD)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    old = "predictions_unpartitioned"
    op.execute("SET LOCAL statement_timeout = 0")  # the copy takes as long as the rows need
    op.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
    _set_aside(old)
    op.execute(
        f"CREATE TABLE predictions (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (ts)"
    )
    op.execute("ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id, ts)")
    for ddl in _INDEXES:
        op.execute(ddl)
    op.execute(f"CREATE TABLE {DEFAULT} PARTITION OF predictions DEFAULT")
    for part in _months(bind, old):
        op.execute(
            f"CREATE TABLE {part.name} PARTITION OF predictions FOR VALUES "
            f"FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
        )
    op.execute(f"INSERT INTO predictions SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    old = "predictions_partitioned"
    op.execute("SET LOCAL statement_timeout = 0")
    op.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
    _set_aside(old)
    op.execute(f"CREATE TABLE predictions (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute("ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id)")
    for ddl in _INDEXES:
        op.execute(ddl)
    op.execute(f"INSERT INTO predictions SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old}")  # its partitions go with it
