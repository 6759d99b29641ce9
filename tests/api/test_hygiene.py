"""Operational hygiene at the HTTP edge: no CORS unless origins are configured, and the API
description can be switched off."""

from __future__ import annotations

from pathlib import Path

from tests.support.app import make_settings, running_app

ORIGIN = "https://ops.example"


async def test_cors_is_off_unless_origins_are_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}  # fmt: skip
    async with running_app(make_settings(tmp_path, url)) as (_, client):
        plain = await client.get("/health", headers={"origin": ORIGIN})
        assert "access-control-allow-origin" not in plain.headers
        options = await client.options("/predict", headers=preflight)
        assert "access-control-allow-origin" not in options.headers

    allowed = make_settings(tmp_path, url, cors_origins=f"{ORIGIN}, https://b.example")
    assert allowed.server.cors_origins == [ORIGIN, "https://b.example"]
    async with running_app(allowed) as (_, client):
        options = await client.options("/predict", headers=preflight)
        assert options.status_code == 200
        assert options.headers["access-control-allow-origin"] == ORIGIN
        answer = await client.get("/health", headers={"origin": ORIGIN})
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        stranger = await client.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers


async def test_docs_can_be_turned_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    async with running_app(make_settings(tmp_path, url)) as (_, client):
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
    async with running_app(make_settings(tmp_path, url, docs=False)) as (_, client):
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path
