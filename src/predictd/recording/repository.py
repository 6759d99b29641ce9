"""All SQL that writes predictions. One batch = one transaction, idempotent on the id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from predictd.db.engine import Database
from predictd.db.tables import predictions
from predictd.recording.record import COLUMNS, JSON_COLUMNS

_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS predictions_staging "
    "(LIKE predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO predictions ({_COLS}) SELECT {_COLS} FROM predictions_staging "
    "ON CONFLICT (id) DO NOTHING"
)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class PredictionWriter:
    """Writes batches of prediction rows; returns how many were new."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        if self.db.dialect == "postgresql":
            return await self._write_postgres(rows)
        return await self._write_sqlite(rows)

    async def _write_postgres(self, rows: Sequence[dict[str, Any]]) -> int:
        # COPY has no conflict clause: stage, then merge skipping ids already present.
        records = [
            tuple(_json_text(r[c]) if c in JSON_COLUMNS else r[c] for c in COLUMNS) for r in rows
        ]
        async with self.db.engine.begin() as conn:
            await conn.exec_driver_sql(_STAGING_DDL)  # also opens the transaction
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.copy_records_to_table(
                "predictions_staging", records=records, columns=COLUMNS
            )
            result = await conn.execute(text(_MERGE))
            return int(result.rowcount)

    async def _write_sqlite(self, rows: Sequence[dict[str, Any]]) -> int:
        stmt = sqlite_insert(predictions).on_conflict_do_nothing(index_elements=["id"])
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt, list(rows))
            return int(result.rowcount)
