"""`predictd monitor ...`: compute and store performance from the recorded predictions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from predictd.agent.actions import Action
from predictd.agent.remediation import Remediation
from predictd.agent.service import action_json
from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.durations import parse_duration
from predictd.monitoring.monitor import MonitorResult, run_monitor
from predictd.services import Services

monitor_app = typer.Typer(help="Performance monitoring.", no_args_is_help=True)


def parse_window(text: str) -> timedelta:
    """'30m', '24h', '7d' -> a timedelta; a bad one ends the command naming --window."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"--window {exc}")


@monitor_app.command()
def run(
    model: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    window: Annotated[str, typer.Option(help="How far back to look: 30m, 24h, 7d.")] = "24h",
) -> None:
    """Compute realised (from feedback) and estimated performance and drift for every version
    that answered in the window, store them (performance_metrics, drift_reports), apply the
    alert rules, and print it all as JSON lines."""
    span = parse_window(window)

    async def work(services: Services) -> tuple[MonitorResult, list[Action]]:
        settings, vocabularies = services.settings, services.registry.vocabulary
        remediation = None
        if settings.agent.enabled:  # read first: a bad policy file changes nothing
            remediation = Remediation(
                services.db, services.registry, settings.agent, services.actions
            )
        result = await run_monitor(
            services.db,
            settings.monitoring,
            settings.alerts,
            span,
            model,
            vocabularies=vocabularies,
        )
        proposed = await remediation.after_pass(result, model) if remediation else []
        return result, proposed

    result, proposed = run_with_services(work)
    if not result.performance:
        typer.echo(f"no predictions in the last {window}" + (f" for {model}" if model else ""))
    for row in result.performance:
        typer.echo(json.dumps(row, default=str))
    for report in result.drift:
        typer.echo(json.dumps({"drift": report}, default=str))
    for event, changed in (("opened", result.alerts.opened), ("resolved", result.alerts.resolved)):
        for alert in changed:
            typer.echo(json.dumps({"alert": event, **alert}, default=str))
    for action in proposed:
        typer.echo(json.dumps({"proposed": action_json(action)}, default=str))
