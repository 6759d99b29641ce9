"""All SQL that writes predictions. One batch = one transaction, idempotent on the id, and the
batch's rollups (recording/rollups.py) are added in that transaction from the rows it actually
inserted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import Table, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from predictd.db.engine import Database
from predictd.db.errors import is_row_error
from predictd.db.tables import prediction_rollups, prediction_rollups_hourly, predictions
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.rollups import KEY_COLUMNS, SUM_COLUMNS, by_hour, rollup, rows_of
from predictd.vocabulary import PREDICTION_COLUMNS

_COLS = ", ".join(f'"{c}"' for c in PREDICTION_COLUMNS)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS predictions_staging "
    "(LIKE predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO predictions ({_COLS}) SELECT {_COLS} FROM predictions_staging "
    "ON CONFLICT (id, ts) DO NOTHING RETURNING id"
)
_ROLLUP_COLUMNS: tuple[str, ...] = tuple(c.name for c in prediction_rollups.c)


def _pg_rollup_upsert(table: str) -> str:
    names = ", ".join(f'"{c}"' for c in _ROLLUP_COLUMNS)
    values = ", ".join(f"${i}" for i in range(1, len(_ROLLUP_COLUMNS) + 1))
    added = ", ".join(f'"{c}" = {table}."{c}" + EXCLUDED."{c}"' for c in SUM_COLUMNS)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {added}, "
        f"first_ts = LEAST({table}.first_ts, EXCLUDED.first_ts), "
        f"last_ts = GREATEST({table}.last_ts, EXCLUDED.last_ts)"
    )


_PG_UPSERTS = {
    "minute": _pg_rollup_upsert("prediction_rollups"),
    "hour": _pg_rollup_upsert("prediction_rollups_hourly"),
}


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
    )  # fmt: skip  (the order of PREDICTION_COLUMNS)


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
        merged with ON CONFLICT (id, ts) DO NOTHING (the key of the time-partitioned table; a
        record keeps its ts), which inserts only the missing rows, and only
        those are added to the rollups.
        """
        tuples = [_copy_tuple(r) for r in records]
        async with self.db.writer_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                return await self._copy(driver, records, tuples)
            except Exception as exc:
                if not is_row_error(exc):
                    # We drove the driver connection directly, so the pool has not seen the
                    # failure: drop the connection rather than hand it out again.
                    await conn.invalidate()
                raise

    @staticmethod
    async def _copy(
        driver: Any, records: Sequence[PredictionRecord], tuples: list[tuple[Any, ...]]
    ) -> int:
        try:
            async with driver.transaction():
                await driver.copy_records_to_table(
                    "predictions", records=tuples, columns=PREDICTION_COLUMNS
                )
                await _add_rollups(driver, records)
            return len(tuples)
        except UniqueViolationError:
            async with driver.transaction():
                await driver.execute(_STAGING_DDL)
                await driver.copy_records_to_table(
                    "predictions_staging", records=tuples, columns=PREDICTION_COLUMNS
                )
                inserted = {row[0] for row in await driver.fetch(_MERGE)}
                await _add_rollups(driver, [r for r in records if r.id in inserted])
            return len(inserted)

    async def _write_sqlite(self, records: Sequence[PredictionRecord]) -> int:
        stmt = (
            sqlite_insert(predictions)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(predictions.c.id)
        )
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt, [r.to_row() for r in records])
            inserted = {row[0] for row in result}
            fresh = [r for r in records if r.id in inserted]
            if fresh:
                for grain, rows in _rollups_by_grain(fresh):
                    await conn.execute(_SQLITE_UPSERTS[grain], rows)
            return len(inserted)


def _rollups_by_grain(
    records: Sequence[PredictionRecord],
) -> list[tuple[str, list[dict[str, Any]]]]:
    minutes = rollup(records)
    return [("minute", rows_of(minutes)), ("hour", rows_of(by_hour(minutes)))]


async def _add_rollups(driver: Any, records: Sequence[PredictionRecord]) -> None:
    if not records:
        return
    for grain, rows in _rollups_by_grain(records):
        await driver.executemany(
            _PG_UPSERTS[grain], [tuple(row[c] for c in _ROLLUP_COLUMNS) for row in rows]
        )


def _sqlite_rollup_upsert(table: Table) -> Any:
    stmt = sqlite_insert(table)
    t, new = table.c, stmt.excluded
    added: dict[str, Any] = {c: t[c] + new[c] for c in SUM_COLUMNS}
    added["first_ts"] = func.min(t.first_ts, new.first_ts)  # SQLite's two-argument min/max
    added["last_ts"] = func.max(t.last_ts, new.last_ts)
    return stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=added)


_SQLITE_UPSERTS = {
    "minute": _sqlite_rollup_upsert(prediction_rollups),
    "hour": _sqlite_rollup_upsert(prediction_rollups_hourly),
}
