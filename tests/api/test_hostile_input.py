"""Hostile bodies get a clear JSON error naming the field, never a 500 and never a row: the
wrong media type (415), nesting past the limit (422 ``body``), non-finite numbers (422 naming
the feature), oversized batches and texts; the depth scan ignores brackets inside strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictd.api.middleware import MAX_JSON_DEPTH, json_depth
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app, wait_shipped


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"text": "hi"}', 0),  # few brackets: not scanned
        (b"[" * 40 + b"]" * 40, 40),
        (b'{"a": [' + b"[" * 40 + b"]" * 40 + b"]}", 42),
        (json.dumps({"text": "[" * 500}).encode(), 1),  # brackets in a string do not nest
        (json.dumps({"t": '\\"[' * 100, "x": [[1]]}).encode(), 3),  # escaped quotes
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


async def test_hostile_bodies_are_refused_by_field(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", max_batch=5,
                             max_text_chars=50)  # fmt: skip
    tabular = artifacts.tabular
    await register_demo(settings, tabular)
    names = list(tabular.feature_names or ())
    good = dict.fromkeys(names, 1.0)
    async with running_app(settings) as (app, client):
        as_json = {"content-type": "application/json"}
        cases: list[tuple[bytes, dict[str, str], int, str | None]] = [
            (b'{"features": {}}', {"content-type": "text/plain"}, 415, "content-type"),
            (b'{"features": {}}', {}, 415, "content-type"),
            (b"a=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "content-type"),
            (b'{"features": ' + b"[" * 5000 + b"]" * 5000 + b"}", as_json, 422, "body"),
            (b"{not json", as_json, 422, "body"),
        ]
        for number in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
            raw = json.dumps({"features": good}).replace("1.0", "@", 1).encode()
            cases.append((raw.replace(b"@", number), as_json, 422, f"features.{names[0]}"))
        cases.append((json.dumps({"features": {**good, names[1]: "7"}}).encode(), as_json, 422,
                      f"features.{names[1]}"))  # fmt: skip
        for body, headers, status, field in cases:
            response = await client.post("/predict", content=body, headers=headers)
            assert response.status_code == status, (body[:60], response.text)
            error = response.json()["error"]
            assert error["field"] == field, (body[:60], error)
            assert "Traceback" not in response.text

        too_many = {"items": [{"features": good}] * 6}
        batch = await client.post("/batch", json=too_many)
        assert (batch.status_code, batch.json()["error"]["field"]) == (422, "items")
        legit = await client.post("/batch", json={"items": [{"features": good}] * 5})
        assert legit.status_code == 200
        await wait_shipped(app)
        summary = (await client.get("/analytics/summary")).json()
        assert summary["total"] + summary["errors"] == 5  # only the legitimate batch was kept

    text_settings = make_settings(tmp_path / "t", f"sqlite:///{tmp_path / 't.db'}",
                                  max_text_chars=50)  # fmt: skip
    await register_demo(text_settings, artifacts.sentiment)
    async with running_app(text_settings) as (_, client):
        long = await client.post("/predict", json={"text": "x" * 51})
        assert (long.status_code, long.json()["error"]["field"]) == (422, "text")
        deep_text = await client.post("/predict", json={"text": "[" * 40})
        assert deep_text.status_code == 200  # brackets in a string are just text
    assert MAX_JSON_DEPTH == 32


async def test_ids_beyond_the_database_integer_are_422(tmp_path: Path) -> None:
    """Found by the fuzzer: a 24-digit alert id reached PostgreSQL's integer and became a 500."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", admin_token="boot")
    admin = {"authorization": "Bearer boot"}
    huge = str(2**31)
    async with running_app(settings) as (_, client):
        for method, path, params in (
            ("POST", f"/alerts/{huge}/acknowledge", {}),
            ("GET", f"/models/m/versions/{huge}", {}),
            ("GET", "/analytics/summary", {"version": huge}),
            ("GET", "/drift/reports", {"version": huge}),
        ):
            response = await client.request(method, path, params=params, headers=admin)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["error"]["field"] in ("alert_id", "version"), response.text
