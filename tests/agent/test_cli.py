"""`predictd actions ...` on SQLite and PostgreSQL: list, show, approve and reject as a named
reviewer (separation of duties holds here too), run; every refusal is one line and exit 1."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from predictd.agent.actions import Action
from predictd.agent.service import ActionService
from predictd.cli import app as cli
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.settings import Settings
from tests.agent.conftest import audit_rows, proposal, stored


@pytest.fixture
def database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    async def prepare() -> None:
        db = Database(Settings(database_url=db_url).database)
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def seed(db_url: str, *proposals: tuple[str, bool, str]) -> list[Action]:
    """(model, requires_approval, requested_by) each."""

    async def work() -> list[Action]:
        db = Database(Settings(database_url=db_url).database)
        try:
            service = ActionService(db)
            return [
                await stored(service, proposal(model=m, requires_approval=r), requested_by=by)
                for m, r, by in proposals
            ]
        finally:
            await db.dispose()

    return asyncio.run(work())


def audit(db_url: str) -> list[tuple[str, str, bool]]:
    async def work() -> list[tuple[str, str, bool]]:
        db = Database(Settings(database_url=db_url).database)
        try:
            return [(r["action"], r["key_name"], r["allowed"]) for r in await audit_rows(db)]
        finally:
            await db.dispose()

    return asyncio.run(work())


def test_review_from_the_command_line(database: str) -> None:
    first, second, bobs = seed(
        database, ("a", True, "agent"), ("b", True, "agent"), ("c", True, "cli:bob")
    )
    runner = CliRunner()
    listed = runner.invoke(cli, ["actions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["id"] for r in rows] == [bobs.id, second.id, first.id]
    assert rows[0]["created_at"] == bobs.created_at.isoformat()
    plain = runner.invoke(cli, ["actions", "list", "--status", "pending"])
    assert plain.stdout.splitlines()[0].split("\t")[:6] == [
        str(bobs.id),
        "pending",
        "open_incident",
        "c",
        "-",
        "medium",
    ]
    shown = runner.invoke(cli, ["actions", "show", str(first.id)])
    assert json.loads(shown.stdout)["reason"] == first.reason

    ok = runner.invoke(cli, ["actions", "approve", str(first.id), "--as", "kim", "--comment", "go"])
    assert (ok.exit_code, ok.stdout.strip()) == (0, f"action {first.id} approved by kim")
    no = runner.invoke(cli, ["actions", "reject", str(second.id), "--as", "kim"])
    assert no.exit_code == 1
    assert no.stderr == "error: a rejection needs a comment saying why\n"
    done = runner.invoke(cli, ["actions", "reject", str(second.id), "--comment", "noisy"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"action {second.id} rejected by cli:")

    own = runner.invoke(cli, ["actions", "approve", str(bobs.id), "--as", "cli:bob"])
    assert own.exit_code == 1
    assert own.stderr == (
        f"error: action {bobs.id} was requested by 'cli:bob': someone else must review it\n"
    )
    again = runner.invoke(cli, ["actions", "approve", str(first.id), "--as", "lee"])
    assert again.exit_code == 1
    assert again.stderr.startswith(f"error: action {first.id} is approved")
    for bad, message in (
        (["show", "999"], "error: no action 999\n"),
        (["list", "--status", "done"], "error: --status 'done': use one of "),
        (["approve", "3", "--as", " "], "error: --as: a printable name"),
    ):
        result = runner.invoke(cli, ["actions", *bad])
        assert result.exit_code == 1, bad
        assert result.stderr.startswith(message), result.stderr
        assert "Traceback" not in result.output

    assert audit(database)[3:] == [
        ("actions.approve", "kim", True),
        ("actions.reject", done.stdout.split()[-1], True),
        ("actions.approve", "cli:bob", False),
        ("actions.approve", "lee", False),
    ]


def test_run_executes_approved_actions(database: str) -> None:
    ok, waiting = seed(database, ("a", False, "agent"), ("b", True, "agent"))
    runner = CliRunner()
    first = runner.invoke(cli, ["actions", "run", "--once"])
    assert first.exit_code == 0, first.output
    (line,) = first.stdout.splitlines()
    assert line.split("\t")[:3] == [str(ok.id), "succeeded", "open_incident"]
    assert runner.invoke(cli, ["actions", "run", "--once"]).stdout == (
        "no approved actions to run\n"
    )

    async def approve_broken() -> None:  # a rollback naming no version cannot succeed
        db = Database(Settings(database_url=database).database)
        try:
            service = ActionService(db)
            await stored(service, proposal("rollback_model", "c", requires_approval=False))
        finally:
            await db.dispose()

    asyncio.run(approve_broken())
    runner.invoke(cli, ["actions", "approve", str(waiting.id), "--as", "kim"])
    second = runner.invoke(cli, ["actions", "run", "--once"])
    assert second.exit_code == 1
    statuses = sorted(line.split("\t")[1] for line in second.stdout.splitlines())
    assert statuses == ["failed", "succeeded"]
    assert second.stderr.startswith("error: 1 of 2 actions failed: ")
