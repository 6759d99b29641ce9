"""POST /predict and /batch through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Artifacts
from tests.support.app import id_counts, make_settings, register_demo, running_app, wait_shipped


async def test_predict_text_answers_and_is_recorded_once(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        response = await client.post("/predict", json={"text": "I love this product"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prediction"] == "positive"
        assert body["model_name"] == "sentiment"
        assert body["model_version"] == 1
        assert body["cache_hit"] is False
        assert set(body["probabilities"]) == {"negative", "neutral", "positive"}
        assert body["confidence"] == max(body["probabilities"].values())
        pid = uuid.UUID(body["prediction_id"])
        assert pid.version == 7
        assert response.headers["x-request-id"]
        await wait_shipped(app)
    assert await id_counts(db_url, [pid]) == {str(pid): 1}


async def test_batch_shares_one_batch_id(tmp_path: Path, db_url: str, artifacts: Artifacts) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    items = [
        {"text": "I love this product"},
        {"text": "This is terrible, I want a refund"},
        {"text": "The box contains two cables"},
    ]
    async with running_app(settings) as (app, client):
        response = await client.post("/batch", json={"items": items})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 3
        labels = [p["prediction"] for p in body["predictions"]]
        assert labels == ["positive", "negative", "neutral"]
        await wait_shipped(app)
        recent = (await client.get("/analytics/recent", params={"limit": 10})).json()
    assert {item["batch_id"] for item in recent["items"]} == {body["batch_id"]}
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert await id_counts(db_url, ids) == dict.fromkeys(ids, 1)


async def test_tabular_model_checks_feature_names(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url)
    await register_demo(settings, artifacts.tabular)
    names = artifacts.tabular.feature_names
    assert names is not None
    features = dict.fromkeys(names, 1.0)
    async with running_app(settings) as (_, client):
        info = (await client.get("/model-info")).json()
        assert info["input_kind"] == "tabular"
        ok = await client.post("/predict", json={"features": features})
        assert ok.status_code == 200, ok.text
        assert ok.json()["prediction"] in (0, 1)

        missing = dict(features)
        del missing[names[3]]
        response = await client.post("/predict", json={"features": missing})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == f"features.{names[3]}"

        extra = features | {"shoe_size": 42}
        response = await client.post("/predict", json={"features": extra})
        assert response.json()["error"]["field"] == "features.shoe_size"

        wrong_type = features | {names[0]: "big"}
        response = await client.post("/predict", json={"features": wrong_type})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == f"features.{names[0]}"

        text_instead = await client.post("/predict", json={"text": "hello"})
        assert text_instead.status_code == 422
        assert text_instead.json()["error"]["field"] == "features"


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"text": ""}, "text", "invalid_input"),
        ({"text": "   "}, "text", "invalid_input"),
        ({"text": "x" * 10_001}, "text", "invalid_input"),
        ({}, "text", "invalid_input"),
        ({"text": "fine", "features": {"a": 1}}, "features", "invalid_input"),
        ({"text": "fine", "extra": 1}, "extra", "invalid_input"),
        ({"text": 12}, "text", "invalid_input"),
        ({"features": {"a": 1}}, "text", "invalid_input"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_records_nothing(
    tmp_path: Path,
    artifacts: Artifacts,
    payload: dict[str, object],
    field: str | None,
    code: str,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (app, client):
        response = await client.post("/predict", json=payload, headers={"x-request-id": "req-1"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == code
        assert error["field"] == field
        assert error["request_id"] == "req-1"
        assert error["message"]
        await wait_shipped(app)
        metrics = (await client.get("/metrics")).text
    assert await id_counts(db_url) == {}
    assert 'predictd_rejected_requests_total{code="invalid_input"} 1.0' in metrics


async def test_malformed_json_and_oversized_bodies(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(
        tmp_path, db_url, model_path=artifacts.sentiment.path, max_body_bytes=4096
    )
    async with running_app(settings) as (app, client):
        bad = await client.post(
            "/predict",
            content=b'{"text": "unterminated',
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_json"

        big = await client.post("/predict", json={"text": "y" * 5000})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # streamed: no Content-Length
            for _ in range(10):
                yield b"z" * 1000

        streamed = await client.post(
            "/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        await wait_shipped(app)
    assert await id_counts(db_url) == {}


async def test_batch_limits(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path, max_batch=3)
    async with running_app(settings) as (app, client):
        over = await client.post("/batch", json={"items": [{"text": "a"}] * 4})
        assert over.status_code == 422
        assert over.json()["error"]["field"] == "items"
        empty = await client.post("/batch", json={"items": []})
        assert empty.status_code == 422
        assert empty.json()["error"]["field"] == "items"
        one_bad = await client.post("/batch", json={"items": [{"text": "ok"}, {"text": ""}]})
        assert one_bad.status_code == 422
        assert one_bad.json()["error"]["field"] == "items[1].text"
        await wait_shipped(app)
    assert await id_counts(db_url) == {}


async def test_the_declared_routes_answer_as_the_fast_path_does(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    """ServingMiddleware answers the predict routes itself; the FastAPI routes declared for
    them (OpenAPI, scope) must still answer the same way when called directly."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
    from starlette.types import Receive, Scope, Send

    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    one = {"text": "I love this product"}
    many = {"items": [one, {"text": "This is terrible, I want a refund"}]}
    volatile = {"prediction_id", "latency_ms", "batch_id"}

    def stable(body: dict[str, object]) -> object:
        if "predictions" in body:
            return [stable(p) for p in body["predictions"]]  # type: ignore[attr-defined]
        return {k: v for k, v in body.items() if k not in volatile}

    async with running_app(settings) as (app, client):
        router = AsyncExitStackMiddleware(app.router)  # what FastAPI puts before its router

        async def routes_only(scope: Scope, receive: Receive, send: Send) -> None:
            scope["app"] = app
            await router(scope, receive, send)

        transport = httpx.ASGITransport(app=routes_only)
        async with httpx.AsyncClient(transport=transport, base_url="http://direct") as direct:
            for path, body in (
                ("/predict", one),
                ("/batch", many),
                ("/models/sentiment/predict", one),
                ("/models/sentiment/batch", many),
            ):
                fast = await client.post(path, json=body)
                declared = await direct.post(path, json=body)
                assert fast.status_code == declared.status_code == 200, (path, declared.text)
                assert stable(fast.json()) == stable(declared.json()), path
            with pytest.raises(RequestValidationError):
                await direct.post("/predict", json={"text": 3})
