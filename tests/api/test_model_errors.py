"""A model that raises: 500 with a request id and no trace; the server keeps serving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from predictd.inference.runtime import ModelInput, Prediction
from predictd.inference.sklearn_runtime import SklearnRuntime
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of


class ExplodingRuntime(SklearnRuntime):
    """A real loaded model that fails on one particular input."""

    def predict(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        if any(isinstance(i, str) and "explode" in i for i in inputs):
            raise RuntimeError("boom: secret internals /etc/passwd")
        return super().predict(inputs)


async def test_model_exception_is_500_without_trace(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=artifacts.sentiment.path
    )
    async with running_app(settings) as (app, client):
        inference = services_of(app).inference
        assert inference.runtime is not None
        exploding = ExplodingRuntime(inference.runtime.path, inference.runtime.meta)
        exploding.prepare()
        inference.set_runtime(exploding)

        failed = await client.post("/predict", json={"text": "please explode"})
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error["code"] == "model_error"
        assert error["request_id"] == failed.headers["x-request-id"]
        assert "boom" not in failed.text
        assert "Traceback" not in failed.text

        still_fine = await client.post("/predict", json={"text": "I love this product"})
        assert still_fine.status_code == 200
