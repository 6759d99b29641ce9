"""/health, /ready, /model-info and /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from predictd.access.keys import KeyService
from predictd.app import create_app
from predictd.db import migrate
from predictd.db.engine import Database
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of


async def test_health_ready_and_model_info(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    async with running_app(settings) as (_, client):
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert {name: c["state"] for name, c in checks.items()} == {
            "server": "ok",
            "model": "ok",
            "database": "ok",
            "spool": "ok",
        }
        assert "password" not in ready.text
        info = (await client.get("/model-info")).json()
        assert info["name"] == "sentiment"
        assert info["version"] == 1
        assert info["flavor"] == "sklearn"
        assert len(info["artifact_sha256"]) == 64
        assert info["loaded_at"]
        assert info["source"] == "registry"


async def test_ready_shows_details_only_to_the_read_scope(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    """A probe (no key) learns each check's state and the server's phase; the database's user,
    host and name, the spool and the model need a key with the read scope."""
    db_url = f"sqlite:///{tmp_path / 'secret-name.db'}"
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path, auth="on",
                             admin_token="boot", spool_dir=tmp_path / "secret-spool")  # fmt: skip
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        reader, _ = await KeyService(db).create("reader", ["read"])
        predictor, _ = await KeyService(db).create("predictor", ["predict"])
    finally:
        await db.dispose()
    async with running_app(settings) as (_, client):
        states = {"server": "ok", "model": "ok", "database": "ok", "spool": "ok"}
        for headers in ({}, {"authorization": "Bearer wrong"},
                        {"authorization": f"Bearer {predictor}"}):  # fmt: skip
            public = await client.get("/ready", headers=headers)
            assert public.status_code == 200, public.text
            checks = public.json()["checks"]
            assert {name: c["state"] for name, c in checks.items()} == states
            assert checks["server"]["detail"] == "serving"  # the phase is no secret
            assert all(c["detail"] is None for n, c in checks.items() if n != "server"), checks
            assert "secret" not in public.text
            assert "sentiment" not in public.text
        for key in (reader, "boot"):
            detailed = await client.get("/ready", headers={"authorization": f"Bearer {key}"})
            assert detailed.status_code == 200
            checks = detailed.json()["checks"]
            assert "secret-name.db" in checks["database"]["detail"], checks
            assert checks["model"]["detail"].startswith("sentiment v1"), checks
            assert "pending" in checks["spool"]["detail"], checks


async def test_ready_shows_details_where_read_is_open(tmp_path: Path, artifacts: Artifacts) -> None:
    """With PREDICTD_AUTH=off (loopback only) anyone holds the read scope, as on every GET."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path)  # fmt: skip
    async with running_app(settings) as (_, client):
        checks = (await client.get("/ready")).json()["checks"]
        assert checks["model"]["detail"].startswith("sentiment v1"), checks
        assert "p.db" in checks["database"]["detail"], checks


async def test_not_ready_without_a_model(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    async with running_app(settings) as (_, client):
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["model"]["state"] == "failing"
        predict = await client.post("/predict", json={"text": "hi"})
        assert predict.status_code == 503
        assert predict.json()["error"]["code"] == "model_not_ready"
        assert predict.headers["retry-after"]


async def test_metrics_exposes_the_documented_series(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=artifacts.sentiment.path
    )
    async with running_app(settings) as (_, client):
        await client.post("/predict", json={"text": "I love this product"})
        before = (await client.get("/metrics")).text
        texts = ["I love this product"] * 3 + ["This is terrible, I want a refund"] * 2
        batch = await client.post("/batch", json={"items": [{"text": t} for t in texts]})
        text = (await client.get("/metrics")).text
    assert (
        'predictd_http_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in before
    )
    assert 'predictd_http_request_duration_seconds_bucket{endpoint="/predict"' in before
    series = 'predictd_predictions_total{label="%s",model="sentiment",variant="production"'
    assert f'{series % "positive"},version="1"}} 1.0' in before
    # A batch counts each of its items under its own answer.
    labels = [p["prediction"] for p in batch.json()["predictions"]]
    assert labels == ["positive"] * 3 + ["negative"] * 2
    assert f'{series % "positive"},version="1"}} 4.0' in text
    assert f'{series % "negative"},version="1"}} 2.0' in text
    for series in (
        "predictd_recorder_queue_depth",
        "predictd_spool_bytes",
        "predictd_db_write_errors_total",
    ):
        assert series in text


async def test_unknown_route_is_json_404(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    async with running_app(settings) as (_, client):
        response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_worker_starts_taking_connections_once_its_model_is_served(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    """`serve --workers N`: the server accepts on the shared socket only after the lifespan's
    start-up, so a worker still loading never gets a request that a sibling could answer."""
    settings = make_settings(tmp_path, db_url, model_path=artifacts.sentiment.path)
    app = create_app(settings, wait_for_model=True)
    async with app.router.lifespan_context(app):
        services = services_of(app)  # no waiting here: start-up has returned
        assert services.readiness.started
        assert services.readiness.model().state == "ok"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.post("/predict", json={"text": "I love this product"})
    assert answer.status_code == 200, answer.text
