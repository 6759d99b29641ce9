"""/analytics/* read from rollups: model/version/time filters, latency percentiles,
timeseries, and keyset pagination of /recent, on SQLite and PostgreSQL. Rows are written
through the real writer with known times so every expected figure is computed here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, running_app

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows() -> list[PredictionRecord]:
    """Model a v1 and v2, model b v1; three days, two labels; latencies 4 ms and 40 ms."""
    out = []
    for day in range(3):
        for hour in (0, 5):
            for n in range(10):
                ts = DAY0 + timedelta(days=day, hours=hour, seconds=n)
                out.append(
                    make_record(
                        id=uuid.uuid4(),
                        ts=ts,
                        model_name="a" if n < 8 else "b",
                        model_version=1 if n < 5 else 2 if n < 8 else 1,
                        output="pos" if n % 2 else "neg",
                        confidence=0.5 + n / 20,
                        latency_ms=4.0 if n < 9 else 40.0,
                        cache_hit=n == 0,
                        input={"text": f"row {day} {hour} {n}"},
                    )
                )
    out.append(make_record(id=uuid.uuid4(), ts=DAY0, model_name="a", status="error",
                           output=None, confidence=None, error="boom"))  # fmt: skip
    out.append(make_record(id=uuid.uuid4(), ts=DAY0, model_name="a", variant="shadow"))
    return out


async def seed(settings: Any) -> list[PredictionRecord]:
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        records = rows()
        assert await PredictionWriter(db).write(records) == len(records)
        return records
    finally:
        await db.dispose()


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_filters_latency_and_timeseries(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url)
    await seed(settings)
    async with running_app(settings) as (_, client):
        everything = await get(client, "/analytics/summary")
        assert everything["total"] == 60  # the failure and the shadow answer are not counted
        assert everything["errors"] == 1
        assert everything["cache_hits"] == 6
        assert everything["cache_hit_rate"] == 0.1
        assert everything["earliest"].startswith("2026-11-01T00:00:00")
        assert (await get(client, "/analytics/summary", model="a"))["total"] == 48
        assert (await get(client, "/analytics/summary", model="a", version=2))["total"] == 18
        one_day = await get(
            client, "/analytics/summary", **{"from": "2026-11-02T00:00:00Z", "to": "2026-11-03"}
        )
        assert one_day["total"] == 20

        labels = await get(client, "/analytics/distribution", model="b")
        deciles = [b["count"] for b in labels.pop("confidence")]
        assert labels == {"total": 12, "labels": [{"label": "neg", "count": 6},
                                                  {"label": "pos", "count": 6}]}  # fmt: skip
        assert sum(deciles) == 12

        latency = await get(client, "/analytics/latency")
        assert latency["count"] == 60
        assert 3 < latency["p50_ms"] <= 5  # 54 rows at 4 ms: bucket (3, 5]
        assert 30 < latency["p99_ms"] <= 50  # 6 rows at 40 ms: bucket (30, 50]
        assert sum(b["count"] for b in latency["buckets"]) == 60
        assert latency["buckets"][-1]["le_ms"] is None

        hours = await get(client, "/analytics/timeseries", interval="hour", model="a")
        assert [p["count"] for p in hours["points"]] == [8] * 6
        assert hours["points"][1]["ts"].startswith("2026-11-01T05:00:00")
        days = await get(client, "/analytics/timeseries", interval="day")
        assert [(p["ts"][:10], p["count"], p["errors"]) for p in days["points"]] == [
            ("2026-11-01", 20, 1), ("2026-11-02", 20, 0), ("2026-11-03", 20, 0),
        ]  # fmt: skip
        minutes = await get(client, "/analytics/timeseries", interval="minute")
        assert len(minutes["points"]) == 6

        backwards = await client.get(
            "/analytics/summary", params={"from": "2026-11-02", "to": "2026-11-01"}
        )
        assert backwards.status_code == 422
        assert backwards.json()["error"]["field"] == "to"
        bad = await client.get("/analytics/timeseries", params={"interval": "week"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "interval"


async def test_recent_pages_by_cursor_and_inputs_need_the_admin(
    tmp_path: Path, db_url: str
) -> None:
    settings = make_settings(tmp_path, db_url, admin_token="s3cret")
    records = await seed(settings)
    newest_first = sorted(records, key=lambda r: (r.ts, r.id), reverse=True)
    async with running_app(settings) as (_, client):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 25}
            if cursor:
                params["cursor"] = cursor
            page = await get(client, "/analytics/recent", **params)
            seen += [item["id"] for item in page["items"]]
            assert all("input" not in item for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [str(r.id) for r in newest_first]

        only_b = await get(client, "/analytics/recent", model="b", limit=1000)
        assert only_b["count"] == 12

        bad = await client.get("/analytics/recent", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "cursor"
        refused = await client.get("/analytics/recent", params={"include_input": "true"})
        assert refused.status_code == 401
        admin = await client.get(
            "/analytics/recent",
            params={"include_input": "true", "limit": 1},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert admin.status_code == 200
        assert admin.json()["items"][0]["input"] == newest_first[0].input
