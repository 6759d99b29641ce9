"""`predictd actions ...`: the agent's proposed actions, reviewed and run from the command line."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from predictd.access import audit
from predictd.agent.actions import STATUSES, Action
from predictd.agent.service import action_json
from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.services import Services
from predictd.settings import Settings

actions_app = typer.Typer(
    help="Remediation actions: list, show, approve, reject, run.", no_args_is_help=True
)
T = TypeVar("T")
As = Annotated[
    str | None,
    typer.Option("--as", help="Who is reviewing (default: cli:<your login name>)."),
]


def _reviewer(name: str | None) -> str:
    if name is not None:
        if not name.strip() or not name.isprintable() or len(name) > 200:
            fail("--as: a printable name of at most 200 characters")
        return name.strip()
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        fail("no login name to review as: pass --as NAME")


def _as(reviewer: str, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` with ``reviewer`` as the one the audit log names."""

    async def acting(services: Services) -> T:
        with audit.acting_as(audit.Actor(reviewer, "approve")):
            return await work(services)

    return run_with_services(acting)


def _line(a: Action) -> str:
    version = f"v{a.model_version}" if a.model_version is not None else "-"
    outcome = a.error or (json.dumps(a.result, default=str) if a.result else "")
    reason, outcome = " ".join(a.reason.split()), " ".join(outcome.split())
    return "\t".join(
        (
            str(a.id),
            a.status,
            a.action_type,
            a.model_name,
            version,
            a.risk,
            a.created_at.isoformat(timespec="seconds"),
            reason,
            outcome,
        )
    )


@actions_app.command("list")
def list_actions(
    status: Annotated[str | None, typer.Option(help=", ".join(STATUSES) + ".")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, every field.")] = False,
) -> None:
    """Actions, newest first: id, status, type, model, version, risk, created, reason."""
    if status is not None and status not in STATUSES:
        fail(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    found = run_with_services(lambda services: services.actions.list(status))
    for action in found:
        typer.echo(json.dumps(action_json(action)) if as_json else _line(action))


@actions_app.command()
def show(action_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """One action, every field, as JSON."""
    action = run_with_services(lambda services: services.actions.get(action_id))
    typer.echo(json.dumps(action_json(action), indent=2))


@actions_app.command()
def approve(
    action_id: Annotated[int, typer.Argument(min=1)],
    comment: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
    reviewer: As = None,
) -> None:
    """Approve a pending action: an executor runs it (the server's, or `actions run`). Who
    requested it may not approve it."""
    who = _reviewer(reviewer)
    done = _as(who, lambda services: services.actions.approve(action_id, who, comment))
    typer.echo(f"action {done.id} approved by {done.reviewed_by}")


@actions_app.command()
def reject(
    action_id: Annotated[int, typer.Argument(min=1)],
    comment: Annotated[str | None, typer.Option(help="Why not (required).")] = None,
    reviewer: As = None,
) -> None:
    """Reject a pending action, saying why."""
    who = _reviewer(reviewer)
    done = _as(who, lambda services: services.actions.reject(action_id, who, comment))
    typer.echo(f"action {done.id} rejected by {done.reviewed_by}")


@actions_app.command()
def run(
    once: Annotated[
        bool, typer.Option("--once", help="One pass, then exit (1 if any action failed).")
    ] = False,
) -> None:
    """Execute approved actions now, with the executor the server runs: a line per finished
    action. Without --once it keeps going every PREDICTD_AGENT_EXECUTE_INTERVAL_S (5 s when
    that is 0) until interrupted."""
    settings = Settings()
    interval = settings.agent.execute_interval_s or 5.0

    async def work(services: Services) -> list[Action]:
        finished: list[Action] = []
        while True:
            for action in await services.executor.tick():
                typer.echo(_line(action))
                finished.append(action)
            if once:
                return finished
            await asyncio.sleep(interval)

    try:
        finished = run_with_services(work, settings=settings)
    except KeyboardInterrupt:
        return
    if not finished:
        typer.echo("no approved actions to run")
    failed = [a.id for a in finished if a.status == "failed"]
    if failed:
        fail(f"{len(failed)} of {len(finished)} actions failed: {', '.join(map(str, failed))}")
