"""Part H: `predictions` partitioned by time against one plain table, at tens of millions of
rows (PostgreSQL).

Two fresh databases get the same rows, spread evenly over the ``--months`` before now: one at
migration head (range-partitioned by month, migration 0015), one at 0014 (a plain table, the
layout before). The rows are made by PostgreSQL itself (INSERT ... SELECT over
generate_series, a million at a time; five models of two versions, three labels, a small JSON
input), so generating them costs no Python. Then, on each:

* recent-window reads of raw rows, as the monitor pass and analytics make them: a version's
  answers and mean confidence over the last hour and the last day, the label mix of the last
  7 days, the newest 100 rows of a model (median of 5 after one warm-up);
* ingest: the real ``PredictionWriter`` (COPY) writing ``--ingest`` fresh rows in batches of
  500, the rate the recorder ships at, with the table already full;
* retention: ``predictd db cleanup`` (``maintenance.cleanup``) of the oldest month;
* migration 0014 -> 0015 of a plain table of ``--migrate-rows`` rows (a third database),
  timed, as seconds per million rows;
* BRIN against B-tree on ``ts`` for the plain table: index size, and the day-window read with
  each (the other dropped).

Usage: ``.venv/bin/python -m benchmarks.partitions --rows 50000000`` (writes the markdown of
part H to stdout; ``--json FILE`` keeps the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks.environment import Postgres, code_version, describe_machine
from benchmarks.report import table
from predictd.db import maintenance, migrate
from predictd.db.engine import Database
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 1_000_000
RUNS = 5
MODELS = 5

# One million rows at a time, `n` numbering them across the whole load: row n falls at
# `start + n * step`, so the rows are in time order as a server writes them.
_FILL = f"""
INSERT INTO predictions (id, ts, model_name, model_version, variant, request_id, input,
    output, confidence, probabilities, latency_ms, cache_hit, status, client_ip, user_agent)
SELECT gen_random_uuid(),
       %(start)s::timestamptz + n * %(step)s::interval,
       'model-' || (n %% {MODELS}),
       1 + (n / 7) %% 2,
       'production',
       'r' || n,
       jsonb_build_object('text', 'review number ' || (n %% 1000)),
       to_jsonb((ARRAY['positive', 'negative', 'neutral'])[1 + n %% 3]),
       0.5 + (n %% 500) / 1000.0,
       '{{"positive": 0.7, "negative": 0.2, "neutral": 0.1}}'::jsonb,
       1.0 + (n %% 97) / 10.0,
       n %% 13 = 0,
       'ok',
       '10.0.0.1',
       'bench'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS n
"""

READS: dict[str, str] = {
    "a version's answers and mean confidence, last hour": (
        "SELECT count(*), avg(confidence) FROM predictions WHERE model_name = 'model-1' "
        "AND model_version = 2 AND ts >= now() - interval '1 hour'"
    ),
    "a version's answers and mean confidence, last day": (
        "SELECT count(*), avg(confidence) FROM predictions WHERE model_name = 'model-1' "
        "AND model_version = 2 AND ts >= now() - interval '1 day'"
    ),
    "label mix, last 7 days": (
        "SELECT output, count(*) FROM predictions WHERE ts >= now() - interval '7 days' "
        "GROUP BY output"
    ),
    "newest 100 rows of a model": (
        "SELECT id FROM predictions WHERE model_name = 'model-3' ORDER BY ts DESC LIMIT 100"
    ),
}
DAY_READ = "a version's answers and mean confidence, last day"


def fill(pg: Postgres, url: str, rows: int, months: int, now: datetime) -> tuple[float, float]:
    """Load ``rows`` rows spread over the ``months`` before ``now``, the key and indexes
    dropped meanwhile and rebuilt after (as a bulk load would); (load s, index build s)."""
    span = timedelta(days=30 * months)
    start = now - span
    step = span / rows
    key = pg.scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_predictions'",
        url,
    )
    indexes = _index_definitions(url)
    pg.execute("ALTER TABLE predictions DROP CONSTRAINT pk_predictions", url)
    for name in indexes:
        pg.execute(f"DROP INDEX {name}", url)
    started = time.monotonic()
    for lo in range(0, rows, CHUNK):
        hi = min(rows, lo + CHUNK)
        _execute(url, _FILL, {"start": start, "step": step, "lo": lo, "hi": hi})
    loaded = time.monotonic() - started
    started = time.monotonic()
    pg.execute(f"ALTER TABLE predictions ADD CONSTRAINT pk_predictions {key}", url)
    for definition in indexes.values():
        pg.execute(definition, url)
    built = time.monotonic() - started
    pg.execute("VACUUM (ANALYZE) predictions", url)
    return loaded, built


def _index_definitions(url: str) -> dict[str, str]:
    """The table's own indexes (not the key's), by name."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'predictions' "
                "AND indexname <> 'pk_predictions'"
            )
            # pg_indexes spells a partitioned index "ON ONLY": rebuilt that way it would cover
            # no partition (INVALID), and every read would scan.
            return {
                str(name): str(definition).replace(" ON ONLY ", " ON ")
                for name, definition in cur.fetchall()
            }
    finally:
        conn.close()


def _execute(url: str, sql: str, params: dict[str, Any]) -> None:
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


def timed(url: str, sql: str) -> float:
    """Median milliseconds of ``sql`` on one open connection, after a warm-up run."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
            runs = []
            for _ in range(RUNS):
                started = time.perf_counter()
                cur.execute(sql)
                cur.fetchall()
                runs.append(time.perf_counter() - started)
        return statistics.median(runs) * 1000
    finally:
        conn.close()


def fresh(now: datetime) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            id=uuid.uuid4(),
            ts=now,
            model_name=f"model-{n % MODELS}",
            model_version=2,
            variant="production",
            request_id=f"i{n}",
            batch_id=None,
            input={"text": f"review number {n % 1000}"},
            output="positive",
            confidence=0.8,
            probabilities={"positive": 0.8, "negative": 0.1, "neutral": 0.1},
            latency_ms=2.0,
            cache_hit=False,
            status="ok",
            error=None,
            client_ip="10.0.0.1",
            user_agent="bench",
        )
        for n in range(500)
    ]


async def ingest(url: str, rows: int) -> float:
    """Rows per second the recorder's writer (COPY, batches of 500) stores."""
    db = Database(Settings(_env_file=None, database_url=url).database)
    writer = PredictionWriter(db)
    try:
        started = time.monotonic()
        for _ in range(rows // 500):
            await writer.write(fresh(datetime.now(UTC)))
        return rows / (time.monotonic() - started)
    finally:
        await db.dispose()


async def cleanup_oldest_month(url: str, months: int) -> tuple[float, int, int]:
    """(seconds, rows deleted, partitions dropped) for `db cleanup` of the oldest month."""
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        started = time.monotonic()
        done = await maintenance.cleanup(db, days=30 * (months - 1))
        return time.monotonic() - started, done.rows, len(done.partitions)
    finally:
        await db.dispose()


async def migrate_to(url: str, revision: str) -> float:
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        started = time.monotonic()
        await migrate.upgrade(db, revision)
        return time.monotonic() - started
    finally:
        await db.dispose()


def size_mb(pg: Postgres, url: str, relation: str) -> float:
    return float(pg.scalar(f"SELECT pg_total_relation_size('{relation}')", url)) / 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    pg = Postgres(args.admin_url)
    now = datetime.now(UTC)
    out: dict[str, Any] = {"rows": args.rows, "months": args.months, "at": now.isoformat()}
    layouts: dict[str, str] = {}
    try:
        for layout, revision in (("partitioned", "head"), ("plain", "0014")):
            url = pg.create_database(f"h_{layout}")
            layouts[layout] = url
            asyncio.run(migrate_to(url, revision))
            if layout == "partitioned":
                asyncio.run(_ensure_months_back(url, args.months, now))
            loaded, built = fill(pg, url, args.rows, args.months, now)
            figures: dict[str, Any] = {
                "load_s": loaded, "index_s": built, "mb": size_mb(pg, url, "predictions")
            }  # fmt: skip
            if layout == "partitioned":
                figures["mb"] = float(pg.scalar(
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                    "WHERE inhparent = 'predictions'::regclass", url)) / 1e6  # fmt: skip
            figures["reads_ms"] = {name: timed(url, sql) for name, sql in READS.items()}
            figures["ingest_rows_s"] = asyncio.run(ingest(url, args.ingest))
            pg.checkpoint()
            figures["cleanup"] = asyncio.run(cleanup_oldest_month(url, args.months))
            out[layout] = figures
            print(f"{layout}: {json.dumps(figures)}", file=sys.stderr, flush=True)

        plain = layouts["plain"]
        brin_mb = size_mb(pg, plain, "ix_predictions_ts")
        brin_ms = timed(plain, READS[DAY_READ])
        pg.execute("DROP INDEX ix_predictions_ts", plain)
        started = time.monotonic()
        pg.execute("CREATE INDEX ix_predictions_ts ON predictions (ts)", plain)
        btree_build_s = time.monotonic() - started
        out["ts_index"] = {
            "brin_mb": brin_mb, "brin_day_ms": brin_ms,
            "btree_mb": size_mb(pg, plain, "ix_predictions_ts"),
            "btree_build_s": btree_build_s,
            "btree_day_ms": timed(plain, READS[DAY_READ]),
        }  # fmt: skip
        for url in layouts.values():
            pg.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        layouts.clear()

        converted = pg.create_database("h_migrate")
        layouts["migrate"] = converted
        asyncio.run(migrate_to(converted, "0014"))
        fill(pg, converted, args.migrate_rows, args.months, now)
        pg.checkpoint()
        seconds = asyncio.run(migrate_to(converted, "0015"))
        out["migration"] = {"rows": args.migrate_rows, "s": seconds,
                            "s_per_million": seconds / (args.migrate_rows / 1e6)}  # fmt: skip
        out["machine"] = describe_machine(pg).__dict__
        out["code"] = code_version(Path(__file__).resolve().parents[1])
    finally:
        pg.drop_all()
    return out


async def _ensure_months_back(url: str, months: int, now: datetime) -> None:
    """The migration made this month and the next three; the load also needs the past."""
    from predictd.db import partitions

    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        await partitions.ensure(db, "month", months + 1, now=now - timedelta(days=30 * months))
    finally:
        await db.dispose()


def markdown(out: dict[str, Any], command: str) -> str:
    p, f = out["partitioned"], out["plain"]
    lines = [
        f"- **Command:** `{command}`",
        f"- **Date:** {out['at'][:16]} UTC; {out['code'][0]}",
        f"- **Rows:** {out['rows']:,} over {out['months']} months (5 models x 2 versions)",
        "",
    ]
    rows: list[list[str]] = [
        ["load (INSERT ... SELECT, s)", f"{p['load_s']:.0f}", f"{f['load_s']:.0f}", ""],
        [
            "key and indexes built after the load (s)",
            f"{p['index_s']:.0f}",
            f"{f['index_s']:.0f}",
            "",
        ],
        ["table + indexes (MB)", f"{p['mb']:,.0f}", f"{f['mb']:,.0f}", ""],
    ]
    for name in READS:
        a, b = p["reads_ms"][name], f["reads_ms"][name]
        rows.append([f"{name} (ms, median of {RUNS})", f"{a:.1f}", f"{b:.1f}", f"{b / a:.1f}x"])
    rows.append(["ingest, writer COPY in batches of 500 (rows/s)",
                 f"{p['ingest_rows_s']:,.0f}", f"{f['ingest_rows_s']:,.0f}",
                 f"{p['ingest_rows_s'] / f['ingest_rows_s']:.2f}x"])  # fmt: skip
    (ps, pr, pn), (fs, fr, _) = p["cleanup"], f["cleanup"]
    rows.append(["`db cleanup` of the oldest month (s)", f"{ps:.1f}", f"{fs:.1f}",
                 f"{fs / ps:.0f}x"])  # fmt: skip
    rows.append(["  rows deleted / partitions dropped", f"{pr:,} / {pn}", f"{fr:,} / -", ""])
    lines += table(["", "partitioned", "plain table", "plain / partitioned"], rows)
    ix, m = out["ts_index"], out["migration"]
    lines += [
        "",
        *table(
            ["index on ts (plain table)", "size MB", "build s", "last-day read ms"],
            [
                ["BRIN", f"{ix['brin_mb']:.2f}", "-", f"{ix['brin_day_ms']:.1f}"],
                [
                    "B-tree",
                    f"{ix['btree_mb']:,.0f}",
                    f"{ix['btree_build_s']:.0f}",
                    f"{ix['btree_day_ms']:.1f}",
                ],
            ],
        ),
        "",
        f"Migration 0014 -> 0015 of a plain table of {m['rows']:,} rows: {m['s']:.1f} s, "
        f"**{m['s_per_million']:.1f} s per million rows**.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--months", type=int, default=10)
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--migrate-rows", type=int, default=5_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, default=str, indent=1))
    command = ".venv/bin/python -m benchmarks.partitions " + " ".join(argv or sys.argv[1:])
    print(markdown(out, command))


if __name__ == "__main__":
    main()
