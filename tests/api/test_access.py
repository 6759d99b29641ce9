"""Access control: every route declares a scope; scoped keys admit and refuse as they should
(401/403/503, never a protected handler reached unauthenticated); revocation reaches a server
within its refresh; the audit log records changes and refusals; the CLI; the loopback rule."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import select
from typer.testing import CliRunner

from predictd.access import audit
from predictd.access.keys import KeyService
from predictd.api import ROUTERS
from predictd.api.auth import Needs
from predictd.cli import app as cli
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.monitoring.alerts import AlertService, Finding
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app, services_of

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/dashboard"),  # static code; every figure it shows comes from a guarded route
    ("GET", "/dashboard/{name}"),
    ("GET", "/v2/health/live"),  # the protocol's /health, /ready and server metadata
    ("GET", "/v2/health/ready"),
    ("GET", "/v2"),
}


def scopes_of(dependant: Dependant) -> set[str]:
    found: set[str] = set()
    for dep in dependant.dependencies:
        if isinstance(dep.call, Needs):
            found.add(dep.call.scope)
        found |= scopes_of(dep)
    return found


def test_every_route_declares_a_scope() -> None:
    declared: dict[tuple[str, str], set[str]] = {}
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods or set():
                declared[(method, route.path)] = scopes_of(route.dependant)
    unguarded = sorted(k for k, v in declared.items() if not v and k not in PUBLIC)
    assert unguarded == []
    assert all(len(v) == 1 for k, v in declared.items() if k not in PUBLIC)
    assert not any(declared[k] for k in PUBLIC)
    for (method, path), scopes in declared.items():
        if path.startswith(("/predict", "/batch")) or path.endswith(
            ("/predict", "/batch", "/infer")
        ):
            assert scopes == {"predict"}, path
        elif method == "GET" and (method, path) not in PUBLIC:
            assert scopes == {"read"}, path
    assert declared[("POST", "/alerts/{alert_id}/acknowledge")] == {"operate"}
    assert declared[("POST", "/models/reload")] == {"admin"}
    assert declared[("POST", "/v2/repository/models/{name}/unload")] == {"admin"}
    assert declared[("POST", "/v2/repository/index")] == {"read"}
    assert declared[("POST", "/models/{name}/versions/{version}/promote")] == {"admin"}


async def make_keys(db: Database) -> dict[str, str]:
    service = KeyService(db)
    keys = {}
    for name, scopes in (("predictor", ["predict"]), ("reader", ["read"]),
                         ("operator", ["operate", "read"]), ("root", ["admin"])):  # fmt: skip
        keys[name], _ = await service.create(name, scopes)  # type: ignore[arg-type]
    return keys


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_scoped_keys_revocation_and_audit(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", keys_refresh_s=0.2, admin_token="boot")
    await register_demo(settings, artifacts.sentiment)
    db = Database(settings.database)
    try:
        keys = await make_keys(db)
        alert = (await AlertService(db).apply([Finding("latency_p99", "m", True)])).opened[0]
        async with running_app(settings) as (app, client):
            text = {"text": "I love it"}
            assert (await client.post("/predict", json=text)).status_code == 401
            wrong = await client.post("/predict", json=text, headers=bearer(keys["reader"]))
            assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "forbidden")
            assert "lacks the 'predict' scope" in wrong.json()["error"]["message"]
            ok = await client.post("/predict", json=text, headers=bearer(keys["predictor"]))
            assert ok.status_code == 200
            admin_ok = await client.post("/predict", json=text, headers=bearer(keys["root"]))
            assert admin_ok.status_code == 200  # admin holds every scope

            summary = "/analytics/summary"
            assert (await client.get(summary, headers=bearer(keys["predictor"]))).status_code == 403
            assert (await client.get(summary, headers=bearer(keys["reader"]))).status_code == 200
            for bad in ("Bearer nope", "Basic cmVhZGVy", f"Token {keys['reader']}", "Bearer "):
                response = await client.get(summary, headers={"authorization": bad})
                assert response.status_code == 401, bad
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers=bearer(keys["reader"]))).status_code == 200

            ack = f"/alerts/{alert['id']}/acknowledge"
            assert (await client.post(ack, headers=bearer(keys["reader"]))).status_code == 403
            assert (await client.post(ack, headers=bearer(keys["operator"]))).status_code == 200
            reload = "/models/reload"
            assert (await client.post(reload, headers=bearer(keys["operator"]))).status_code == 403
            assert (await client.post(reload, headers=bearer(keys["root"]))).status_code == 200
            assert (await client.post(reload, headers=bearer("boot"))).status_code == 200
            inputs = {"include_input": "true"}
            recent = await client.get("/analytics/recent", params=inputs,
                                      headers=bearer(keys["reader"]))  # fmt: skip
            assert recent.status_code == 403

            # Revoked: refused within the refresh interval, by this server.
            with audit.acting_as(audit.Actor("ops-laptop", "admin")):
                await KeyService(db).revoke("reader")
            await asyncio.sleep(0.6)
            assert (await client.get(summary, headers=bearer(keys["reader"]))).status_code == 401
            await services_of(app).keys.refresh()  # flushes last_used_at

        listed = {k["name"]: k for k in await KeyService(db).listing(include_revoked=True)}
        assert listed["reader"]["revoked_at"] is not None
        assert listed["predictor"]["last_used_at"] is not None
        assert "key_hash" not in listed["predictor"]
        async with db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(select(audit_log))]
    finally:
        await db.dispose()
    actions = {(r["action"], r["key_name"], r["allowed"]) for r in rows}
    assert ("keys.create", "cli:" + rows[0]["key_name"].split(":", 1)[1], True) in actions
    assert ("keys.revoke", "ops-laptop", True) in actions
    assert ("POST /predict", None, False) in actions  # no key
    assert ("POST /predict", "reader", False) in actions  # key without the scope
    assert ("alerts.acknowledge", "operator", True) in actions
    acked = next(r for r in rows if r["action"] == "alerts.acknowledge")
    assert (acked["before"]["status"], acked["after"]["status"]) == ("active", "acknowledged")
    assert acked["scope"] == "operate"
    assert acked["request_id"]


async def test_path_tricks_never_reach_a_protected_handler(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", auth="on")
    async with running_app(settings) as (_, client):
        attempts: list[tuple[str, str]] = [
            ("GET", "/analytics/summary/"),
            ("GET", "//analytics/summary"),
            ("GET", "/ANALYTICS/summary"),
            ("GET", "/health/../analytics/summary"),
            ("GET", "/health/%2e%2e/analytics/summary"),
            ("GET", "/analytics/%2e%2e/analytics/summary"),
            ("POST", "/models/reload/"),
            ("POST", "/models/%2e%2e/models/reload"),
            ("GET", "/models/reload"),
            ("PUT", "/predict"),
            ("HEAD", "/analytics/summary"),
            ("OPTIONS", "/analytics/summary"),
            ("OPTIONS", "/models/reload"),
            ("GET", "/metrics"),
            ("GET", "/drift/reports"),
            ("GET", "/model-info"),
        ]
        for method, path in attempts:
            response = await client.request(method, path, follow_redirects=False)
            assert response.status_code in (307, 401, 404, 405), (method, path, response.text)
            if response.status_code == 307:  # the redirect goes to the guarded route
                again = await client.request(method, response.headers["location"])
                assert again.status_code == 401, (method, path)


async def test_keys_fail_closed_while_the_database_was_never_reached(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    unreachable = "postgresql://postgres@127.0.0.1:9/nowhere"
    settings = make_settings(tmp_path, unreachable, auth="on", admin_token="boot",
                             model_path=artifacts.sentiment.path)  # fmt: skip
    async with running_app(settings) as (_, client):
        answer = await client.post("/predict", json={"text": "hi"}, headers=bearer("pdk_x"))
        assert (answer.status_code, answer.json()["error"]["code"]) == (503, "unavailable")
        # The bootstrap token needs no database to be checked; what it asks for still does.
        promote = await client.post("/models/sentiment/rollback", headers=bearer("boot"))
        assert promote.status_code == 503


def test_keys_from_the_cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def prepare() -> None:
        db = Database(Settings(database_url=db_url).database)
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--name", "ci", "--scope", "predict,read"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    assert key.startswith("pdk_")
    assert len(key) > 40
    again = runner.invoke(cli, ["keys", "create", "--name", "ci", "--scope", "read"])
    assert again.exit_code == 1
    assert "revoke it first" in again.output
    bad = runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "predict,root"])
    assert bad.exit_code == 1
    assert "unknown scope 'root'" in bad.output
    listed = runner.invoke(cli, ["keys", "list"])
    rows: list[dict[str, Any]] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["scopes"], r["prefix"]) for r in rows] == [
        ("ci", ["predict", "read"], key[:8])
    ]
    assert key not in listed.output
    gone = runner.invoke(cli, ["keys", "revoke", "ci"])
    assert gone.exit_code == 0, gone.output
    assert runner.invoke(cli, ["keys", "list"]).stdout.strip() == ""
    assert runner.invoke(cli, ["keys", "revoke", "ci"]).exit_code == 1


def test_auth_off_is_refused_on_a_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTD_AUTH", "off")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.db")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "9"])
    assert result.exit_code == 1
    assert "refusing to serve 0.0.0.0 with PREDICTD_AUTH=off" in result.output
