"""`predictd db ...`: schema migrations and operator chores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from predictd.access import audit
from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.db import maintenance, migrate, partitions
from predictd.db.engine import Database
from predictd.monitoring import system
from predictd.services import Services
from predictd.settings import Settings

db_app = typer.Typer(help="Database schema and maintenance.", no_args_is_help=True)


@db_app.command()
def upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    run_with_services(lambda services: migrate.upgrade(services.db, revision))
    typer.echo(f"upgraded to {revision}")


@db_app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    run_with_services(lambda services: migrate.downgrade(services.db, revision))
    typer.echo(f"downgraded to {revision}")


@db_app.command()
def current() -> None:
    """Print the database's current revision."""
    typer.echo(
        run_with_services(lambda services: migrate.current_revision(services.db)) or "<base>"
    )


@db_app.command()
def history() -> None:
    """List the migrations predictd ships, newest first."""
    for line in migrate.history():
        typer.echo(line)


def _spool_backlog(spool_dir: Path) -> tuple[int, int]:
    files = list(spool_dir.glob("w*/*.seg")) if spool_dir.exists() else []
    return len(files), sum(f.stat().st_size for f in files)


@db_app.command()
def status() -> None:
    """Database URL (no password), reachability, revision, row counts and spool backlog."""
    settings = Settings()
    db = Database(settings.database)  # a TLS setting it cannot use fails here, before any output
    typer.echo(f"database:  {db.display_url}")
    spool_dir = settings.recording.spool_dir
    segments, spooled = _spool_backlog(spool_dir)
    typer.echo(f"spool:     {spooled} bytes in {segments} segment(s) under {spool_dir}")

    async def probe(services: Services) -> tuple[str | None, dict[str, int] | None]:
        revision = await migrate.current_revision(services.db)
        counts = await maintenance.row_counts(services.db) if revision else None
        return revision, counts

    try:
        revision, counts = run_with_services(probe, settings=settings)
    except typer.Exit:
        typer.echo("reachable: no")
        raise
    head = migrate.head_revision()
    typer.echo("reachable: yes")
    state = "up to date" if revision == head else f"behind head {head}: run `predictd db upgrade`"
    typer.echo(f"revision:  {revision or '<base>'} ({state})")
    for table, count in (counts or {}).items():
        typer.echo(f"rows:      {table}={count}")


@db_app.command()
def cleanup(
    days: Annotated[int, typer.Option(min=1, help="Keep this many days of predictions.")],
    inputs_days: Annotated[
        int | None,
        typer.Option(min=1, help="Blank stored inputs older than this (default: --days)."),
    ] = None,
    audit_days: Annotated[
        int | None,
        typer.Option(min=1, help="Delete audit log rows older than this (default: keep all)."),
    ] = None,
) -> None:
    """The retention tool: delete predictions, feedback and system metric samples older than
    DAYS (predictions in bounded chunks), blank the inputs of predictions older than
    --inputs-days, delete feedback whose prediction never arrived within
    PREDICTD_FEEDBACK_UNMATCHED_DAYS, and audit log rows older than --audit-days. The rollups
    (aggregates, no inputs) are kept."""
    if inputs_days is not None and inputs_days > days:
        fail("--inputs-days must not exceed --days: older predictions are deleted outright")

    async def work(services: Services) -> dict[str, Any]:
        db, service = services.db, services.feedback
        keep = services.settings.monitoring.feedback_unmatched_days
        return {
            "predictions": await maintenance.cleanup(db, days),
            "inputs": await maintenance.forget_inputs(db, inputs_days) if inputs_days else 0,
            "feedback": await service.purge_older(days),
            "samples": await system.purge(db, days),
            "orphans": await service.purge_unmatched(keep),
            "audit": await audit.purge(db, audit_days) if audit_days else 0,
            "keep": keep,
        }

    done = run_with_services(work)
    cleaned: maintenance.Cleaned = done["predictions"]
    dropped = (
        f" ({len(cleaned.partitions)} partition(s) dropped whole)" if cleaned.partitions else ""
    )
    typer.echo(f"deleted {cleaned.rows} prediction(s) older than {days} day(s){dropped}")
    if inputs_days:
        typer.echo(f"blanked the input of {done['inputs']} prediction(s) older than "
                   f"{inputs_days} day(s)")  # fmt: skip
    typer.echo(f"deleted {done['feedback']} feedback answer(s) older than {days} day(s)")
    typer.echo(f"deleted {done['samples']} system metric sample(s) older than {days} day(s)")
    typer.echo(
        f"deleted {done['orphans']} feedback answer(s) whose prediction never arrived within "
        f"{done['keep']} day(s)"
    )
    if audit_days:
        typer.echo(f"deleted {done['audit']} audit log row(s) older than {audit_days} day(s)")


@db_app.command()
def backup(path: Annotated[Path, typer.Argument(help="Where to write the backup.")]) -> None:
    """Back up the database (SQLite online backup; pg_dump on PostgreSQL)."""

    async def work(services: Services) -> str:
        return await asyncio.to_thread(maintenance.backup, services.db, path)

    typer.echo(run_with_services(work))


partitions_app = typer.Typer(
    help="PostgreSQL: the time partitions of the predictions table.", no_args_is_help=True
)
db_app.add_typer(partitions_app, name="partitions")


@partitions_app.command("ensure")
def partitions_ensure() -> None:
    """Create the current period's partition and PREDICTD_PARTITIONS_AHEAD more, each
    PREDICTD_PARTITION_INTERVAL long; rows waiting in the default partition move into theirs.
    The monitor pass does the same; run this from cron or a CronJob when it is off."""

    async def work(services: Services) -> partitions.Ensured:
        database = services.settings.database
        return await partitions.ensure(
            services.db, database.partition_interval, database.partitions_ahead
        )

    done = run_with_services(work)
    if done.skipped:
        typer.echo("nothing to do: not a partitioned PostgreSQL table, or another process is "
                   "changing the partitions")  # fmt: skip
        return
    typer.echo(f"created {len(done.created)} partition(s)"
               + (f": {', '.join(done.created)}" if done.created else "")
               + (f"; moved {done.moved} row(s) out of the default partition" if done.moved
                  else ""))  # fmt: skip


@partitions_app.command("list")
def partitions_list() -> None:
    """Each partition with its time range and PostgreSQL's estimate of its rows."""
    rows = run_with_services(lambda services: partitions.describe(services.db))
    if not rows:
        typer.echo("predictions is not partitioned (SQLite, or not migrated to 0015)")
        return
    for row in rows:
        span = (f"{row['start']:%Y-%m-%d %H:%M} .. {row['end']:%Y-%m-%d %H:%M}"
                if row["start"] is not None else "everything else")  # fmt: skip
        typer.echo(f"{row['name']:<24} {span:<36} ~{row['rows_estimate']} row(s)")
