"""The dashboard's pending actions in Debian's headless Chromium against a real server on
PostgreSQL: proposals with their reason, evidence, risk and age; a key with the approve scope
approves one and rejects another (with the reason it is asked for) by clicking, which reaches
the database and the audit log; a read-only key sees the same list and no buttons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from predictd.access.keys import KeyService
from predictd.agent.actions import Action, Proposal
from predictd.agent.service import ActionService
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.settings import Settings
from tests.agent.conftest import TTL
from tests.conftest import Artifacts
from tests.dashboard.test_dashboard import prepare
from tests.support.app import make_settings
from tests.support.server import ServerPool

ALERT = {
    "id": 7,
    "rule": "accuracy",
    "severity": "critical",
    "title": "sentiment v1 accuracy 0.610",
    "message": "realised accuracy 0.610 on 240 labelled predictions",
}
PROPOSALS = [
    Proposal(
        "rollback_model",
        "sentiment",
        "accuracy fell 0.25 below training",
        "high",
        True,
        model_version=1,
        evidence={"alert": ALERT, "metrics": {"accuracy": 0.61, "labelled": 240}},
    ),
    Proposal(
        "retrain_model",
        "sentiment",
        "240 new labels since v1 was trained",
        "medium",
        True,
        evidence={"metrics": {"labelled": 240}, "note": "<img src=x onerror=alert(1)>"},
    ),
    Proposal(
        "open_incident",
        "tabular",
        "error rate 9.1% over the last hour",
        "low",
        True,
        evidence={"alert": {"title": "tabular error rate 9.1%"}},
    ),
]


async def seed(url: str) -> tuple[dict[str, str], list[Action]]:
    db = Database(Settings(database_url=url).database)
    try:
        keys = {}
        for name, scopes in (("kim", ["read", "approve"]), ("viewer", ["read"])):
            keys[name], _ = await KeyService(db).create(name, scopes)  # type: ignore[arg-type]
        service = ActionService(db)
        stored = [await service.propose(p, ttl=TTL) for p in PROPOSALS]
        return keys, [a for a in stored if a is not None]
    finally:
        await db.dispose()


async def outcome(url: str) -> tuple[list[Action], list[dict[str, Any]]]:
    db = Database(Settings(database_url=url).database)
    try:
        actions = sorted(await ActionService(db).list(), key=lambda a: a.id)
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                select(audit_log).where(
                    audit_log.c.action.in_(("actions.approve", "actions.reject"))
                )
            )
            return actions, [dict(r._mapping) for r in rows]
    finally:
        await db.dispose()


# What the panel shows, read from its DOM.
ROWS = """() => [...document.querySelectorAll("#actions tbody tr[data-id]")].map((tr) => ({
  id: Number(tr.dataset.id),
  cells: [...tr.cells].slice(0, 6).map((td) => td.textContent),
  evidence: [...tr.querySelectorAll(".evidence li")].map((li) => li.textContent),
  buttons: [...tr.querySelectorAll("button")].map((b) => b.textContent),
}))"""


def test_pending_actions_are_reviewed_in_the_browser(
    chromium: str,
    servers: ServerPool,
    postgres_url: str,
    artifacts: Artifacts,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Page, sync_playwright

    asyncio.run(prepare(make_settings(tmp_path, postgres_url), artifacts))
    keys, (rollback, retrain, incident) = asyncio.run(seed(postgres_url))
    # The executor is off: the decisions stay as the reviewer left them.
    server = servers.start(
        postgres_url,
        spool_dir=tmp_path / "spool",
        model=None,
        env={"PREDICTD_AUTH": "on", "PREDICTD_AGENT_EXECUTE_INTERVAL_S": "0"},
    )
    problems: list[str] = []

    def open_as(browser: Any, key: str) -> Page:
        page: Page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))  # no alert() ran
        page.on(
            "response",
            lambda r: (
                problems.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 and r.status != 401
                else None
            ),
        )
        page.goto(f"{server.base_url}/dashboard")
        page.wait_for_selector('body[data-state="needs-key"]', timeout=20_000)
        page.fill("#key", key)
        page.click("#auth button")
        page.wait_for_selector('body[data-state="ready"]', timeout=20_000)
        return page

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = open_as(browser, keys["kim"])
            page.wait_for_selector('body[data-review="true"]')
            shown = {row["id"]: row for row in page.evaluate(ROWS)}
            assert sorted(shown) == [rollback.id, retrain.id, incident.id]
            first = shown[rollback.id]
            assert first["cells"][:4] == [
                "high",
                "rollback model",
                "sentiment v1",
                "accuracy fell 0.25 below training",
            ]
            assert first["cells"][5].endswith((" s", " min"))
            assert first["evidence"] == [
                "alert: sentiment v1 accuracy 0.610: realised accuracy 0.610 on 240 labelled "
                "predictions",
                "metrics: accuracy=0.610, labelled=240",
            ]
            # evidence is text: the markup is shown, not run (the dialog handler would see it)
            assert "note: <img src=x onerror=alert(1)>" in shown[retrain.id]["evidence"]
            assert first["buttons"] == ["Approve", "Reject"]

            page.click(f'#actions tr[data-id="{rollback.id}"] button.approve')
            page.wait_for_selector(f'#actions tr[data-id="{rollback.id}"]', state="detached")
            assert "approved" in page.inner_text("#actions-note")

            row = f'#actions tr[data-id="{retrain.id}"]'
            page.click(f"{row} button.reject")
            page.click(f"{row} button.confirm-reject")  # no reason yet: the form refuses
            assert page.is_visible(f"{row} input[name=comment]")
            page.fill(f"{row} input[name=comment]", "labels are still arriving")
            page.click(f"{row} button.confirm-reject")
            page.wait_for_selector(row, state="detached")
            assert "rejected" in page.inner_text("#actions-note")
            assert [r["id"] for r in page.evaluate(ROWS)] == [incident.id]

            viewer = open_as(browser, keys["viewer"])
            viewer.wait_for_selector('body[data-review="false"]')
            seen = viewer.evaluate(ROWS)
            assert [r["id"] for r in seen] == [incident.id]
            assert seen[0]["buttons"] == []
            assert viewer.query_selector_all("#actions button") == []
            assert "Read-only" in viewer.inner_text("#actions-note")
        finally:
            browser.close()
    assert problems == []

    actions, audit_rows = asyncio.run(outcome(postgres_url))
    by_id = {a.id: a for a in actions}
    assert (by_id[rollback.id].status, by_id[rollback.id].reviewed_by) == ("approved", "kim")
    assert by_id[retrain.id].status == "rejected"
    assert by_id[retrain.id].review_comment == "labels are still arriving"
    assert by_id[incident.id].status == "pending"
    assert sorted((r["action"], r["key_name"], r["allowed"], r["target"]) for r in audit_rows) == [
        ("actions.approve", "kim", True, f"action {rollback.id} (rollback_model, sentiment)"),
        ("actions.reject", "kim", True, f"action {retrain.id} (retrain_model, sentiment)"),
    ]
