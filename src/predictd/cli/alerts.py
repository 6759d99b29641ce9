"""`predictd alerts ...`: the alerts the monitor raised, from the command line."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.services import Services

alerts_app = typer.Typer(help="Alerts: list, acknowledge, resolve.", no_args_is_help=True)
STATUSES = ("active", "acknowledged", "resolved", "open")
By = Annotated[str | None, typer.Option(help="Who (default: your login name).")]


@alerts_app.command("list")
def list_alerts(
    status: Annotated[
        str | None, typer.Option(help="active, acknowledged, resolved or open.")
    ] = None,
) -> None:
    """Alerts, newest first, as JSON lines."""
    if status is not None and status not in STATUSES:
        fail(f"--status {status!r}: use one of {', '.join(STATUSES)}")

    async def work(services: Services) -> list[dict[str, Any]]:
        return await services.alerts.list(status)

    for alert in run_with_services(work):
        typer.echo(json.dumps(alert, default=str))


@alerts_app.command("ack")
def acknowledge(alert_id: int, by: By = None) -> None:
    """Acknowledge an active alert."""

    async def work(services: Services) -> dict[str, Any]:
        return await services.alerts.acknowledge(alert_id, by or getpass.getuser())

    alert = run_with_services(work)
    typer.echo(f"alert {alert_id} acknowledged by {alert['acknowledged_by']}")


@alerts_app.command("resolve")
def resolve(
    alert_id: int,
    by: By = None,
    notes: Annotated[str | None, typer.Option(help="What was done.")] = None,
) -> None:
    """Resolve an open alert, with notes."""

    async def work(services: Services) -> dict[str, Any]:
        return await services.alerts.resolve(alert_id, by or getpass.getuser(), notes)

    alert = run_with_services(work)
    typer.echo(f"alert {alert_id} resolved by {alert['resolved_by']}")
