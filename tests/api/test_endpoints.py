"""The hot endpoints are declared once (api/endpoints.py): the fast table the dispatcher
answers from and the FastAPI routes are made from the same entries, and answer alike."""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Match

from predictd.access.keys import KeyService
from predictd.api import FAST_TABLE, ROUTERS
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app, services_of

ADMIN = {"authorization": "Bearer parity-admin"}
JSON = {**ADMIN, "content-type": "application/json"}
INFER = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["I love it"]}]}
TWO = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}
VOLATILE = {"prediction_id", "latency_ms", "request_id", "batch_id"}


def _binary_infer() -> tuple[bytes, dict[str, str]]:
    texts = [b"I love this", b"refund now"]
    data = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    )
    return header + data, {**ADMIN, "inference-header-content-length": str(len(header))}


def _requests(reader: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Valid and invalid requests to every hot endpoint: (path, body, headers)."""
    read_only = {"authorization": f"Bearer {reader}", "content-type": "application/json"}
    one, batch = orjson.dumps({"text": "I love it"}), orjson.dumps({"items": [{"text": "a"}]})
    binary, binary_headers = _binary_infer()
    infer = orjson.dumps(INFER)
    cases = [
        ("/predict", one, JSON),
        ("/predict", orjson.dumps({"text": 5}), JSON),
        ("/predict", b"{}", JSON),
        ("/predict", b"{not json", JSON),
        ("/predict", orjson.dumps({"text": "x", "surprise": 1}), JSON),
        ("/predict", orjson.dumps({"features": {"a": 1}}), JSON),
        ("/predict", one, {"content-type": "application/json"}),  # no key: 401
        ("/predict", one, read_only),  # wrong scope: 403
        ("/predict", one, {**ADMIN, "content-type": "text/plain"}),
        ("/predict", gzip.compress(one), {**JSON, "content-encoding": "gzip"}),
        ("/batch", batch, JSON),
        ("/batch", orjson.dumps({"items": []}), JSON),
        ("/batch", orjson.dumps({"items": [{"text": 1}]}), JSON),
        ("/batch", batch, read_only),
        ("/models/sentiment/predict", one, JSON),
        ("/models/sentiment/batch", batch, JSON),
        ("/models/absent/predict", one, JSON),
        ("/models/absent/batch", batch, read_only),
        ("/v2/models/sentiment/infer", infer, JSON),
        ("/v2/models/sentiment/infer", orjson.dumps(TWO), JSON),
        ("/v2/models/sentiment/infer", binary, binary_headers),
        ("/v2/models/sentiment/infer", b"{not json", JSON),
        ("/v2/models/sentiment/infer", orjson.dumps({"inputs": "text"}), JSON),
        ("/v2/models/sentiment/infer", infer, read_only),
        ("/v2/models/sentiment/infer", infer, {"content-type": "application/json"}),
        ("/v2/models/absent/infer", infer, JSON),
        ("/v2/models/sentiment/versions/1/infer", infer, JSON),
        ("/v2/models/sentiment/versions/99/infer", infer, JSON),
    ]
    for version in ("0", "abc", "%D9%A1", "%C2%B2", "+1", "1_0", "2147483648", "00000000001"):
        cases.append((f"/v2/models/sentiment/versions/{version}/infer", infer, JSON))
    cases.append(("/v2/models/sentiment/versions/abc/infer", infer, read_only))
    return cases


def _stable(value: Any) -> Any:
    """An answer without what differs between two runs of the same request."""
    if isinstance(value, dict):
        if value.get("name") == "prediction_id" and "data" in value:
            return {k: v for k, v in value.items() if k != "data"}
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _answer(response: httpx.Response) -> dict[str, Any]:
    length = response.headers.get("inference-header-content-length")
    head = response.content[: int(length)] if length else response.content
    return {
        "status": response.status_code,
        "type": response.headers.get("content-type"),
        "retry": response.headers.get("retry-after"),
        "request_ids": [v for k, v in response.headers.multi_items() if k == "x-request-id"],
        "body": _stable(orjson.loads(head)),
        "raw_bytes": len(response.content) - len(head),
    }


async def _served(settings: Settings, reader: str, fast_table: bool) -> list[dict[str, Any]]:
    answers = []
    async with running_app(settings, fast_table=fast_table) as (app, client):
        for index, (path, body, headers) in enumerate(_requests(reader)):
            rid = {"x-request-id": f"parity-{index}"}
            answers.append(_answer(await client.post(path, content=body, headers=headers | rid)))
        counted = Counter(
            {sample.labels["code"]: int(sample.value)
             for metric in services_of(app).metrics.rejected_inputs.collect()
             for sample in metric.samples if sample.name.endswith("_total")}
        )  # fmt: skip
    refused = Counter(_code(a["body"]) for a in answers if 400 <= a["status"] < 500)
    assert counted == refused  # every refusal counted, once, under its code
    return answers


def _code(body: dict[str, Any]) -> str:
    code = body["code"] if isinstance(body["error"], str) else body["error"]["code"]
    return str(code)


async def test_the_fast_table_and_the_declared_routes_answer_alike(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", auth="on",
                             admin_token="parity-admin")  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        reader, _ = await KeyService(db).create("reader", ["read"])
    finally:
        await db.dispose()

    fast = await _served(settings, reader, fast_table=True)
    declared = await _served(settings, reader, fast_table=False)

    requests = _requests(reader)
    for index, (request, one, other) in enumerate(zip(requests, fast, declared, strict=True)):
        assert one == other, (request[0], request[1][:60], one, other)
        assert one["request_ids"] == [f"parity-{index}"], one  # stamped once, on every answer
    statuses = [a["status"] for a in fast]
    # The cases cover what they say they cover.
    assert {200, 401, 403, 404, 415, 422} <= set(statuses), statuses
    assert any(a["raw_bytes"] for a in fast), "no binary answer was compared"
    version_errors = [a["body"] for a, r in zip(fast, requests, strict=True)
                      if "/versions/" in r[0] and a["status"] == 422]  # fmt: skip
    assert len(version_errors) == 8
    assert all(e["field"] == "version" for e in version_errors), version_errors


def test_the_fast_table_is_the_declared_routes() -> None:
    """Every route the app includes under a hot endpoint's name is in the table, the table
    holds nothing else, and it matches with the regex the route itself matches with."""
    declared = {
        (method, route.path): route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint.__name__ in hot_names()
        for method in route.methods or set()
    }
    table = {(e.endpoint.method, e.endpoint.path): e for e in FAST_TABLE.entries}
    assert declared.keys() == table.keys()
    for key, route in declared.items():
        entry = table[key]
        assert entry.regex.pattern == route.path_regex.pattern
        assert entry.route is route
        assert entry.needs.scope == "predict"


def hot_names() -> set[str]:
    return {entry.endpoint.name for entry in FAST_TABLE.entries}


@pytest.mark.parametrize(
    "path",
    [
        "/predict", "/batch", "/predict/", "/models/a/predict", "/models/a.b-c_1/batch",
        "/models//predict", "/models/a/b/predict", "/models/a/predict/x", "/v2/models/m/infer",
        "/v2/models/m/versions/3/infer", "/v2/models/m/versions//infer",
        "/v2/models/m/versions/x/y/infer", "/v2/models/m/ready", "/models/reload",
        "/v2/repository/models/m/load", "/models/m/versions/2/promote", "/health",
    ],
)  # fmt: skip
def test_the_table_matches_what_the_router_would(path: str) -> None:
    """For any POST path, the table finds the route the app's routers (included in this
    order) would pick first, or none when that is another route."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    routes = [route for router in ROUTERS for route in router.routes]
    first = next(
        ((route, child) for route in routes
         for match, child in [route.matches(scope)] if match is Match.FULL),
        None,
    )  # fmt: skip
    found = FAST_TABLE.match("POST", path)
    if found is None:
        assert first is None or getattr(first[0], "name", None) not in hot_names(), path
    else:
        assert first is not None, path
        assert found[0].route is first[0]
        assert found[1] == first[1]["path_params"]


async def test_the_routers_own_404_and_405_are_not_counted_as_refused_inputs(
    tmp_path: Path,
) -> None:
    """Scanners probing unknown paths are not inputs refused (they never were counted); a
    request refused for its content is."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    async with running_app(settings) as (app, client):
        assert (await client.get("/wp-login.php")).status_code == 404
        assert (await client.get("/predict")).status_code == 405
        assert (await client.post("/predict", json={"surprise": 1})).status_code == 422
        counted = {
            sample.labels["code"]: sample.value
            for metric in services_of(app).metrics.rejected_inputs.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }
    assert counted == {"invalid_input": 1.0}
