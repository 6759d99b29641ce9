"""`predictd drift ...`: measure drift of recent inputs against each version's reference."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from predictd.cli.monitor import parse_window
from predictd.cli.runner import run_with_services
from predictd.monitoring.alerts import Changes, Webhook, drift_findings
from predictd.services import Services

drift_app = typer.Typer(help="Data drift.", no_args_is_help=True)


@drift_app.command()
def run(
    model: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    window: Annotated[str, typer.Option(help="How far back to look: 30m, 24h, 7d.")] = "24h",
) -> None:
    """Test each version that answered in the window against its reference profile, store a
    report per version in drift_reports, open or clear the drift alert, and print the reports
    as JSON lines (exit 0 either way: drift is a finding, not a failure)."""
    span = parse_window(window)

    async def work(services: Services) -> tuple[list[dict[str, Any]], Changes]:
        reports = await services.drift.run(span, model)
        changes = await services.alerts.apply(drift_findings(reports))
        await Webhook(services.settings.alerts.webhook_url).send(changes)
        return reports, changes

    reports, changes = run_with_services(work)
    if not reports:
        typer.echo(f"no predictions in the last {window}" + (f" for {model}" if model else ""))
    for report in reports:
        typer.echo(json.dumps(report, default=str))
    for event, changed in (("opened", changes.opened), ("resolved", changes.resolved)):
        for alert in changed:
            typer.echo(json.dumps({"alert": event, **alert}, default=str))


@drift_app.command("reports")
def reports_command(
    model: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Only this version.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Stored drift reports, newest first: one summary line each."""

    async def work(services: Services) -> list[dict[str, Any]]:
        return await services.drift.history(model, version, limit)

    for r in run_with_services(work):
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        verdict = "DRIFT" if r["drift_detected"] else r["status"]
        typer.echo(
            f"{r['computed_at']:%Y-%m-%d %H:%M:%S}  {r['model_name']} v{r['model_version']}  "
            f"{verdict:<17} score {score:>4}  rows {r['rows']:>8}  {r['message']}"
        )
