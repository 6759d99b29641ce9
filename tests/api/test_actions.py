"""/actions over HTTP with real keys: list and read with the read scope, approve and reject
with the approve scope only, separation of duties, the error shapes (422 naming the field,
404, 409), the audit rows, /whoami, and the server's executor running an approved action."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from predictd.access.keys import KeyService
from predictd.agent.service import ActionService
from predictd.db import migrate
from predictd.db.engine import Database
from tests.agent.conftest import audit_rows, proposal, stored
from tests.support.app import make_settings, running_app

KEYS = {
    "predictor": ["predict"],
    "reader": ["read"],
    "operator": ["operate", "read"],
    "kim": ["approve", "read"],
    "alice": ["approve", "read"],
}


async def prepare(db: Database) -> dict[str, dict[str, str]]:
    """Keys by name, as Authorization headers."""
    await migrate.upgrade(db)
    service = KeyService(db)
    headers = {}
    for name, scopes in KEYS.items():
        key, _ = await service.create(name, scopes)  # type: ignore[arg-type]
        headers[name] = {"authorization": f"Bearer {key}"}
    return headers


def error(response: Any) -> tuple[int, str, str | None]:
    body = response.json()["error"]
    return response.status_code, body["code"], body.get("field")


async def test_reading_and_deciding_actions(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", agent_execute_interval_s=0)
    db = Database(settings.database)
    try:
        keys = await prepare(db)
        actions = ActionService(db)
        first = await stored(actions, proposal())
        second = await stored(actions, proposal(model="tabular"))
        alices = await stored(actions, proposal(model="alices"), requested_by="alice")
        stale = await stored(actions, proposal(model="stale"), ttl=timedelta(seconds=-1))
        async with running_app(settings) as (_, client):
            listed = await client.get("/actions", headers=keys["reader"])
            assert listed.status_code == 200
            shown = listed.json()["actions"]
            assert [a["id"] for a in shown] == [stale.id, alices.id, second.id, first.id]
            one = next(a for a in shown if a["id"] == first.id)
            assert (one["status"], one["risk"], one["requested_by"]) == (
                "pending",
                "medium",
                "agent",
            )
            assert one["evidence"]["metrics"] == {"accuracy": 0.61, "labelled": 240}
            assert datetime.fromisoformat(one["created_at"]) == first.created_at
            got = await client.get(f"/actions/{first.id}", headers=keys["reader"])
            assert got.json() == one
            pending = await client.get(
                "/actions", params={"status": "pending"}, headers=keys["reader"]
            )
            assert len(pending.json()["actions"]) == 4
            bad = await client.get("/actions", params={"status": "done"}, headers=keys["reader"])
            assert error(bad) == (422, "invalid_input", "status")
            assert error(await client.get("/actions/999", headers=keys["reader"]))[:2] == (
                404,
                "not_found",
            )
            assert error(await client.get("/actions/0", headers=keys["reader"]))[0] == 422
            assert (await client.get("/actions")).status_code == 401
            assert (await client.get("/actions", headers=keys["predictor"])).status_code == 403

            approve = f"/actions/{first.id}/approve"
            reject = f"/actions/{second.id}/reject"
            for name in ("predictor", "reader", "operator"):  # no approve scope
                for url in (approve, reject):
                    refused = await client.post(url, json={"comment": "x"}, headers=keys[name])
                    assert error(refused)[:2] == (403, "forbidden"), (name, url)
            assert (await client.post(approve)).status_code == 401

            for body in (None, {}, {"comment": ""}, {"comment": "x" * 2001}):
                no_reason = await client.post(reject, json=body, headers=keys["kim"])
                assert error(no_reason) == (422, "invalid_input", "comment"), body
            extra = await client.post(
                approve, json={"comment": "ok", "by": "x"}, headers=keys["kim"]
            )
            assert error(extra) == (422, "invalid_input", "by")

            ok = await client.post(approve, json={"comment": "go"}, headers=keys["kim"])
            assert ok.status_code == 200
            assert (ok.json()["status"], ok.json()["reviewed_by"]) == ("approved", "kim")
            assert ok.json()["review_comment"] == "go"
            no = await client.post(reject, json={"comment": "seasonal"}, headers=keys["alice"])
            assert (no.json()["status"], no.json()["reviewed_by"]) == ("rejected", "alice")
            bare = await client.post(f"/actions/{first.id}/approve", headers=keys["alice"])
            assert error(bare)[:2] == (409, "conflict")
            assert "is approved" in bare.json()["error"]["message"]

            own = await client.post(f"/actions/{alices.id}/approve", headers=keys["alice"])
            assert error(own)[:2] == (403, "forbidden")
            assert "requested by 'alice'" in own.json()["error"]["message"]
            other = await client.post(f"/actions/{alices.id}/approve", headers=keys["kim"])
            assert other.json()["status"] == "approved"

            late = await client.post(f"/actions/{stale.id}/approve", headers=keys["kim"])
            assert error(late)[:2] == (409, "conflict")
            assert "expired" in late.json()["error"]["message"]
            missing = await client.post(
                "/actions/999/reject", json={"comment": "x"}, headers=keys["kim"]
            )
            assert error(missing)[:2] == (404, "not_found")
        rows = await audit_rows(db)
    finally:
        await db.dispose()
    decisions = [
        (r["action"], r["key_name"], r["allowed"], r["scope"])
        for r in rows
        if r["action"] in ("actions.approve", "actions.reject")
    ]
    assert decisions == [
        ("actions.approve", "kim", True, "approve"),
        ("actions.reject", "alice", True, "approve"),
        ("actions.approve", "alice", False, "approve"),  # already approved
        ("actions.approve", "alice", False, "approve"),  # her own request
        ("actions.approve", "kim", True, "approve"),
        ("actions.approve", "kim", False, "approve"),  # expired
        ("actions.reject", "kim", False, "approve"),  # no such action
    ]
    approved = next(r for r in rows if r["action"] == "actions.approve")
    assert approved["request_id"]
    assert approved["after"]["comment"] == "go"


async def test_whoami(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, url, auth="on", agent_execute_interval_s=0)
    db = Database(settings.database)
    try:
        keys = await prepare(db)
        async with running_app(settings) as (_, client):
            me = await client.get("/whoami", headers=keys["kim"])
            assert me.json() == {"key": "kim", "scopes": ["read", "approve"]}
            assert (await client.get("/whoami")).status_code == 401
            assert (await client.get("/whoami", headers=keys["predictor"])).status_code == 403
        async with running_app(settings.replace(auth="off")) as (_, client):
            anonymous = await client.get("/whoami")
            assert anonymous.json() == {"key": None, "scopes": ["predict", "read"]}
    finally:
        await db.dispose()


async def test_the_server_executes_what_was_approved(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", agent_execute_interval_s=0.05)
    db = Database(settings.database)
    try:
        keys = await prepare(db)
        action = await stored(ActionService(db), proposal())
        async with running_app(settings) as (_, client):
            approved = await client.post(f"/actions/{action.id}/approve", headers=keys["kim"])
            assert approved.status_code == 200
            deadline = time.monotonic() + 20
            while (
                current := (
                    await client.get(f"/actions/{action.id}", headers=keys["reader"])
                ).json()
            )["status"] in ("approved", "running"):
                assert time.monotonic() < deadline, current
                await asyncio.sleep(0.05)
            # The executor refreshes the gauge after the action's outcome has committed.
            while (
                'predictd_agent_actions{status="succeeded"} 1.0'
                not in (metrics := (await client.get("/metrics", headers=keys["reader"])).text)
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()
    assert current["status"] == "succeeded", current
    assert current["attempts"] == 1
    assert current["result"]["incident"]["reason"] == action.reason
    assert 'predictd_agent_actions{status="succeeded"} 1.0' in metrics
    assert 'predictd_agent_actions{status="pending"} 0.0' in metrics
