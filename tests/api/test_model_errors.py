"""A model that raises: 500 with a request id and no trace; the server keeps serving."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of
from tests.support.runtimes import serve_exploding


async def test_model_exception_is_500_without_trace(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=artifacts.sentiment.path
    )
    async with running_app(settings) as (app, client):
        serve_exploding(services_of(app).inference)

        failed = await client.post("/predict", json={"text": "please explode"})
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error["code"] == "model_error"
        assert error["request_id"] == failed.headers["x-request-id"]
        assert "boom" not in failed.text
        assert "Traceback" not in failed.text

        still_fine = await client.post("/predict", json={"text": "I love this product"})
        assert still_fine.status_code == 200
