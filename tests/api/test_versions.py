"""A version in a URL is ASCII digits, on every route that takes one: the fast table (V2 infer)
and the declared routes alike. ``int()`` takes other scripts' digits (Arabic-Indic one is 1)
and fails on others (superscript two), and pydantic takes "+1", " 1" and "1_0" (10)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.types import Receive, Scope, Send

from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app

# Arabic-Indic one, superscript two, fullwidth one, sign, space, underscore, 11 digits.
NOT_ASCII_DIGITS = ["%D9%A1", "%C2%B2", "%EF%BC%91", "+1", "%201", "1_0", "00000000001"]
ADMIN = {"authorization": "Bearer versions-admin"}
INFER = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["I love it"]}]}


@pytest.mark.parametrize("version", NOT_ASCII_DIGITS)
async def test_a_version_is_ascii_digits_on_every_route(
    version: str, tmp_path: Path, artifacts: Artifacts
) -> None:
    model = artifacts.sentiment.path
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, model_path=model, admin_token="versions-admin")
    async with running_app(settings) as (app, client):
        calls = [
            ("POST", f"/v2/models/sentiment/versions/{version}/infer", INFER),  # the fast table
            ("GET", f"/v2/models/sentiment/versions/{version}", None),
            ("GET", f"/v2/models/sentiment/versions/{version}/ready", None),
            ("GET", f"/models/sentiment/versions/{version}", None),
            ("POST", f"/models/sentiment/versions/{version}/promote", None),
            ("POST", f"/models/sentiment/versions/{version}/stage", None),
            ("GET", f"/analytics/summary?model=sentiment&version={version}", None),
            ("GET", f"/drift/reports?model=sentiment&version={version}", None),
        ]
        for method, path, body in calls:
            response = await client.request(method, path, json=body, headers=ADMIN)
            assert response.status_code == 422, (path, response.status_code, response.text)
            payload = response.json()
            field = payload["field"] if path.startswith("/v2") else payload["error"]["field"]
            assert field == "version", (path, payload)
        # The same version in ASCII is served.
        ok = await client.post("/v2/models/sentiment/versions/1/infer", json=INFER)
        assert ok.status_code == 200, ok.text
        assert (await client.get("/v2/models/sentiment/versions/1")).status_code == 200

        # The declared V2 infer route (the fast table answers it over HTTP) refuses it too.
        router = AsyncExitStackMiddleware(app.router)

        async def routes_only(scope: Scope, receive: Receive, send: Send) -> None:
            scope["app"] = app
            await router(scope, receive, send)

        transport = httpx.ASGITransport(app=routes_only)
        async with httpx.AsyncClient(transport=transport, base_url="http://direct") as direct:
            with pytest.raises(RequestValidationError) as refused:
                await direct.post(f"/v2/models/sentiment/versions/{version}/infer", json=INFER)
            assert refused.value.errors()[0]["loc"][-1] == "version"
