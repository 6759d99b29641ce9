"""Windows read whole hours from the hourly rollups and the edge minutes from the minute
rollups: for random windows the answers equal what the raw rows say, on both databases."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.analytics.repository import AnalyticsRepository
from predictd.db.engine import Database
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.vocabulary import Window
from tests.recording.test_recorder import make_record

START = datetime(2026, 11, 20, 21, 37, tzinfo=UTC)


def records(rng: random.Random) -> list[PredictionRecord]:
    out = []
    for _ in range(3000):
        ok = rng.random() > 0.05
        out.append(
            make_record(
                id=uuid.uuid4(),
                ts=START + timedelta(seconds=rng.uniform(0, 3 * 86400)),
                model_name=rng.choice(["a", "b"]),
                variant=rng.choice(["production", "production", "shadow"]),
                output=rng.choice(["x", "y", "z"]) if ok else None,
                status="ok" if ok else "error",
                cache_hit=rng.random() < 0.2,
            )
        )
    return out


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def expected(rows: list[PredictionRecord], window: Window) -> dict[str, Any]:
    def inside(r: PredictionRecord) -> bool:
        m = minute(r.ts)
        return (
            (window.start is None or m >= minute(window.start))
            and (window.end is None or m < window.end)
            and (window.model is None or r.model_name == window.model)
            and r.variant != "shadow"
        )

    chosen = [r for r in rows if inside(r)]
    ok = [r for r in chosen if r.status == "ok"]
    return {
        "total": len(ok),
        "errors": len(chosen) - len(ok),
        "cache_hits": sum(r.cache_hit for r in ok),
        "earliest": min((r.ts for r in chosen), default=None),
        "latest": max((r.ts for r in chosen), default=None),
        "labels": Counter(r.output for r in ok),
        "days": Counter(r.ts.date() for r in ok),
    }


async def test_random_windows_match_the_raw_rows(db: Database) -> None:
    rng = random.Random(21)
    rows = records(rng)
    writer = PredictionWriter(db)
    for first in range(0, len(rows), 250):
        await writer.write(rows[first : first + 250])
    span = 3 * 86400
    windows = [Window(), Window(model="a")]
    for _ in range(40):
        a, b = sorted(rng.uniform(-3600, span + 3600) for _ in range(2))
        start = START + timedelta(seconds=a)
        end = START + timedelta(seconds=b)
        if rng.random() < 0.3:  # whole hours on one side or both
            start = start.replace(minute=0, second=0, microsecond=0)
        if rng.random() < 0.3:
            end = end.replace(minute=0, second=0, microsecond=0)
        if end <= start:
            continue
        windows.append(
            Window(
                start=None if rng.random() < 0.1 else start,
                end=None if rng.random() < 0.1 else end,
                model=rng.choice([None, "a", "b"]),
            )
        )
    async with db.engine.connect() as conn:
        repo = AnalyticsRepository(conn)
        for window in windows:
            want = expected(rows, window)
            got = await repo.totals(window)
            assert {k: got[k] for k in ("total", "errors", "cache_hits")} == {
                k: want[k] for k in ("total", "errors", "cache_hits")
            }, window
            assert (got["earliest"], got["latest"]) == (want["earliest"], want["latest"]), window
            assert sum(got["histogram"]) == want["total"]
            labels = dict(await repo.distribution(window))
            assert labels == dict(want["labels"]), window
            days = {p["ts"].date(): p["count"] for p in await repo.timeseries(window, "day")}
            assert days == {d: n for d, n in want["days"].items() if n}, window
