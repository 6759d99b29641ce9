"""Part H, replicas: `POST /predict` throughput of 1, 2 and 3 `predictd serve` processes on
one PostgreSQL database, as pods behind a Service.

Each replica is a real server recording every answer (durability `process`, the default);
one wrk per replica, the same total connections split among them, as a balancer would. Every
answer must reach the table. Besides requests per second, the machine's CPU use tells what
limits the figure.

Usage: ``.venv/bin/python -m benchmarks.replicas`` (markdown to stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.environment import CpuTimes, Postgres, code_version, postgres_cpu_seconds
from benchmarks.report import table
from benchmarks.serving import write_bodies
from benchmarks.targets import LoadSettings, predictd_server, run_wrk, wait_for_rows
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _migrate(url: str) -> None:
    db = Database(Settings(_env_file=None, database_url=url).database)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


def one(pg: Postgres, model: Path, bodies: Path, work: Path, replicas: int,
        args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    url = pg.create_database(f"replicas{replicas}")
    asyncio.run(_migrate(url))  # once, before any replica starts: none races another
    servers = [
        predictd_server(f"r{replicas}-{n}", url, model, work / f"r{replicas}-{n}", record=True)
        for n in range(replicas)
    ]
    try:
        for server in servers:
            server.wait_ready("/ready")
        load = LoadSettings(args.concurrency // replicas, args.duration, args.warmup, bodies,
                            generator="wrk")  # fmt: skip
        busy0, pg0 = CpuTimes.now(), postgres_cpu_seconds()
        started = time.monotonic()
        with ThreadPoolExecutor(replicas) as pool:
            stats = list(pool.map(lambda s: run_wrk(s.base + "/predict", load), servers))
        elapsed = time.monotonic() - started
        busy, pg_cpu = CpuTimes.now().busy_pct_since(busy0), postgres_cpu_seconds() - pg0
        answered = sum(int(s["ok_total"]) for s in stats)
        drain = wait_for_rows(pg, url, answered)
        rows = pg.count_rows(url)
    finally:
        for server in servers:
            server.stop()
    return {
        "replicas": replicas,
        "rps": sum(float(s["rps"]) for s in stats),
        "p99_ms": max(float(s["p99_ms"]) for s in stats),
        "non_2xx": sum(int(s["non_2xx_total"]) + int(s["errors_total"]) for s in stats),
        "answered": answered,
        "rows": rows,
        "drain_s": drain,
        "machine_busy_pct": busy,
        "postgres_cpu_pct": 100 * pg_cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args(argv)
    from predictd.demo.train import train_sentiment

    pg = Postgres(args.admin_url)
    results = []
    with tempfile.TemporaryDirectory(prefix="predictd-replicas-") as tmp:
        work = Path(tmp)
        model = train_sentiment(work / "model").path
        bodies = write_bodies(work)["unique"]
        try:
            for replicas in (1, 2, 3):
                results.append(one(pg, model, bodies, work, replicas, args))
                print(f"{results[-1]}", file=sys.stderr, flush=True)
                pg.checkpoint()
        finally:
            pg.drop_all()
    base = results[0]["rps"]
    command = ".venv/bin/python -m benchmarks.replicas " + " ".join(argv or sys.argv[1:])
    lines = [
        f"- **Command:** `{command}`",
        f"- **Code:** {code_version(Path(__file__).resolve().parents[1])[0]}",
        f"- {args.concurrency} connections in all (wrk, split evenly among the replicas), "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured, unique inputs",
        "",
        *table(
            [
                "replicas",
                "req/s",
                "vs 1",
                "p99 ms (worst)",
                "non-2xx",
                "answered",
                "rows",
                "machine busy %",
                "PostgreSQL CPU %",
            ],
            [
                [
                    str(r["replicas"]),
                    f"{r['rps']:,.0f}",
                    f"{r['rps'] / base:.2f}x",
                    f"{r['p99_ms']:.1f}",
                    str(r["non_2xx"]),
                    f"{r['answered']:,}",
                    f"{r['rows']:,}",
                    f"{r['machine_busy_pct']:.0f}",
                    f"{r['postgres_cpu_pct']:.0f}",
                ]
                for r in results
            ],
        ),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
