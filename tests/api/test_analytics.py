"""/analytics/* over recorded predictions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, wait_shipped

TEXTS = [
    "I love this product",
    "Absolutely great, I love it",
    "This is terrible, I want a refund",
    "The box contains two cables",
]


async def test_summary_distribution_recent(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        empty = (await client.get("/analytics/summary")).json()
        assert empty["total"] == 0
        assert empty["p95_latency_ms"] is None

        answers = [(await client.post("/predict", json={"text": t})).json() for t in TEXTS]
        await wait_shipped(app)

        summary = (await client.get("/analytics/summary")).json()
        assert summary["total"] == 4
        expected_conf = sum(a["confidence"] for a in answers) / 4
        assert abs(summary["avg_confidence"] - expected_conf) < 1e-9
        assert summary["p95_latency_ms"] >= summary["avg_latency_ms"] > 0
        assert summary["earliest"] <= summary["latest"]

        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        future = (await client.get("/analytics/summary", params={"from": later})).json()
        assert future["total"] == 0
        past = (await client.get("/analytics/summary", params={"to": later})).json()
        assert past["total"] == 4

        dist = (await client.get("/analytics/distribution")).json()
        counts = {d["label"]: d["count"] for d in dist["labels"]}
        expected: dict[str, int] = {}
        for a in answers:
            expected[a["prediction"]] = expected.get(a["prediction"], 0) + 1
        assert counts == expected
        assert dist["total"] == 4
        deciles = [0] * 10
        for a in answers:
            deciles[min(9, int(a["confidence"] * 10))] += 1
        assert [b["count"] for b in dist["confidence"]] == deciles
        assert (dist["confidence"][0]["ge"], dist["confidence"][-1]["lt"]) == (0.0, 1.0)

        recent = (await client.get("/analytics/recent", params={"limit": 2})).json()
        assert recent["count"] == 2
        newest_first = [a["prediction_id"] for a in reversed(answers)][:2]
        assert [r["id"] for r in recent["items"]] == newest_first
        assert all("input" not in r for r in recent["items"])

        too_many = await client.get("/analytics/recent", params={"limit": 1001})
        assert too_many.status_code == 422
        assert too_many.json()["error"]["field"] == "limit"
        bad_date = await client.get("/analytics/summary", params={"from": "yesterday"})
        assert bad_date.status_code == 422
        assert bad_date.json()["error"]["field"] == "from"
