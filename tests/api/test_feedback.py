"""POST /feedback and /feedback/batch on SQLite and PostgreSQL: early feedback counts once its
prediction arrives, a second answer replaces the first, bad input names the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from predictd.db.engine import Database
from predictd.db.tables import feedback
from predictd.monitoring.feedback import FeedbackService
from predictd.recording.repository import PredictionWriter
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, running_app, services_of, wait_shipped

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


async def post(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def stored(db: Database) -> dict[uuid.UUID, tuple[Any, int]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(feedback.c.prediction_id, feedback.c.actual, feedback.c.revisions)
        )
        return {r[0]: (r[1], r[2]) for r in rows}


async def test_feedback_before_and_after_its_prediction(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        db = services_of(app).db
        answer = await post(client, "/predict", {"text": "I love this product"})
        await wait_shipped(app)
        after = await post(
            client, "/feedback", {"prediction_id": answer["prediction_id"], "actual": "positive"}
        )
        assert after == {"prediction_id": answer["prediction_id"], "replaced": False,
                         "matched": True}  # fmt: skip

        # Feedback first (the recorder has not shipped the row yet), the row later.
        early = uuid.uuid4()
        ack = await post(client, "/feedback", {"prediction_id": str(early), "actual": "negative"})
        assert ack["matched"] is False
        waiting = await client.get("/feedback/summary")
        assert waiting.json()["unmatched"] == 1
        assert waiting.json()["oldest_unmatched_at"] is not None
        assert await PredictionWriter(db).write([make_record(id=early)]) == 1
        summary = (await client.get("/feedback/summary")).json()
        assert summary == {"total": 2, "matched": 2, "unmatched": 0, "oldest_unmatched_at": None}

        # A second answer replaces the first.
        again = await post(client, "/feedback", {"prediction_id": str(early), "actual": "positive"})
        assert again["replaced"] is True
        assert (await stored(db))[early] == ("positive", 2)


async def test_batches_and_bad_input(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url)
    async with running_app(settings) as (app, client):
        a, b = uuid.uuid4(), uuid.uuid4()
        ack = await post(
            client,
            "/feedback/batch",
            {
                "items": [
                    {"prediction_id": str(a), "actual": 1},
                    {"prediction_id": str(b), "actual": True},
                    {"prediction_id": str(a), "actual": 2.5},
                ]
            },
        )
        assert ack["received"] == 3
        assert ack["replaced"] == 0
        assert set(ack["unmatched"]) == {str(a), str(b)}
        assert await stored(services_of(app).db) == {a: (2.5, 1), b: (True, 1)}

        too_many = {"items": [{"prediction_id": str(uuid.uuid4()), "actual": 1}] * 1001}
        cases: list[tuple[str, Any, str]] = [
            ("/feedback", {"prediction_id": "nope", "actual": "x"}, "prediction_id"),
            ("/feedback", {"prediction_id": str(a)}, "actual"),
            ("/feedback", {"prediction_id": str(a), "actual": None}, "actual"),
            ("/feedback", {"prediction_id": str(a), "actual": ""}, "actual"),
            ("/feedback", {"prediction_id": str(a), "actual": [1]}, "actual"),
            ("/feedback/batch", {"items": []}, "items"),
            ("/feedback/batch", too_many, "items"),
        ]
        for path, body, field in cases:
            response = await client.post(path, json=body)
            assert response.status_code == 422, (body, response.text)
            assert field in response.json()["error"]["field"], (body, response.json())
        nan = await client.post(
            "/feedback",
            content=f'{{"prediction_id": "{a}", "actual": NaN}}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422
        assert await stored(services_of(app).db) == {a: (2.5, 1), b: (True, 1)}


async def test_unmatched_feedback_is_purged_after_its_days(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url)
    async with running_app(settings) as (app, client):
        db = services_of(app).db
        matched, orphan, recent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for ident in (matched, orphan, recent):
            await post(client, "/feedback", {"prediction_id": str(ident), "actual": "x"})
        await PredictionWriter(db).write([make_record(id=matched)])
        old = datetime.now(UTC) - timedelta(days=10)
        async with db.engine.begin() as conn:
            await conn.execute(
                update(feedback)
                .where(feedback.c.prediction_id.in_([matched, orphan]))
                .values(received_at=old)
            )
        assert await FeedbackService(db).purge_unmatched(days=7) == 1
        assert set(await stored(db)) == {matched, recent}


async def test_feedback_needs_the_database(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(
        tmp_path, UNREACHABLE, db_connect_timeout_s=0.5, model_path=artifacts.sentiment.path
    )
    async with running_app(settings) as (_, client):
        response = await client.post(
            "/feedback", json={"prediction_id": str(uuid.uuid4()), "actual": "x"}
        )
        assert response.status_code == 503
        assert "error" in response.json()
