"""A body without the model's input names the field the model takes: `text` for a text model,
`features` for a tabular one (the schema alone cannot know which), on every predict route."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app


async def problem(client: httpx.AsyncClient, path: str, body: object) -> dict[str, str]:
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == "invalid_input"
    return error


@pytest.mark.parametrize("kind", ["text", "tabular"])
async def test_an_empty_item_names_the_models_input(
    tmp_path: Path, artifacts: Artifacts, kind: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    demo = artifacts.sentiment if kind == "text" else artifacts.tabular
    await register_demo(settings, demo)
    taken, other = ("text", "features") if kind == "text" else ("features", "text")
    good: dict[str, object] = (
        {"text": "I love this product"}
        if kind == "text"
        else {"features": dict.fromkeys(demo.feature_names or (), 1.0)}
    )
    async with running_app(settings) as (_, client):
        name = (await client.get("/model-info")).json()["name"]
        for path in ("/predict", f"/models/{name}/predict"):
            error = await problem(client, path, {})
            assert error["field"] == taken, error
            assert taken in error["message"]
        for path in ("/batch", f"/models/{name}/batch"):
            assert (await problem(client, path, {"items": [{}]}))["field"] == f"items[0].{taken}"
            error = await problem(client, path, {"items": [good, {}]})
            assert error["field"] == f"items[1].{taken}"
        # Both: the one this model does not take is the one named.
        both = good | {other: "hello" if other == "text" else {"a": 1.0}}
        assert (await problem(client, "/predict", both))["field"] == other
        assert (await client.post("/predict", json=good)).status_code == 200
