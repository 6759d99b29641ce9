"""All SQL that writes predictions. One batch = one transaction, idempotent on the id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from predictd.db.engine import Database
from predictd.db.errors import is_row_error
from predictd.db.tables import predictions
from predictd.recording.record import COLUMNS, PredictionRecord

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


def _copy_tuple(r: PredictionRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.ts,
        r.model_name,
        r.model_version,
        r.variant,
        r.request_id,
        r.batch_id,
        _json_text(r.input),
        _json_text(r.output),
        r.confidence,
        _json_text(r.probabilities),
        r.latency_ms,
        r.cache_hit,
        r.status,
        r.error,
        r.client_ip,
        r.user_agent,
        r.shadow_of,
    )  # fmt: skip  (the order of COLUMNS)


class PredictionWriter:
    """Writes batches of prediction records; returns how many rows were new."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        if not records:
            return 0
        if self.db.dialect == "postgresql":
            return await self._write_postgres(records)
        return await self._write_sqlite(records)

    async def _write_postgres(self, records: Sequence[PredictionRecord]) -> int:
        """COPY straight into the table — the fast path, since ids are fresh almost always.

        COPY has no conflict clause, so a batch holding an id that is already there (a replay
        after a crash, or a commit whose reply was lost) aborts; that batch is then staged and
        merged with ON CONFLICT (id) DO NOTHING, which inserts only the missing rows.
        """
        tuples = [_copy_tuple(r) for r in records]
        async with self.db.writer_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                return await self._copy(driver, tuples)
            except Exception as exc:
                if not is_row_error(exc):
                    # We drove the driver connection directly, so the pool has not seen the
                    # failure: drop the connection rather than hand it out again.
                    await conn.invalidate()
                raise

    @staticmethod
    async def _copy(driver: Any, tuples: list[tuple[Any, ...]]) -> int:
        try:
            async with driver.transaction():
                await driver.copy_records_to_table("predictions", records=tuples, columns=COLUMNS)
            return len(tuples)
        except UniqueViolationError:
            async with driver.transaction():
                await driver.execute(_STAGING_DDL)
                await driver.copy_records_to_table(
                    "predictions_staging", records=tuples, columns=COLUMNS
                )
                status: str = await driver.execute(_MERGE)
            return int(status.rsplit(" ", 1)[-1])

    async def _write_sqlite(self, records: Sequence[PredictionRecord]) -> int:
        stmt = sqlite_insert(predictions).on_conflict_do_nothing(index_elements=["id"])
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt, [r.to_row() for r in records])
            return int(result.rowcount)
