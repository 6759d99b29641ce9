"""`predictd keys ...`: create, list and revoke API keys (run where the database is)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from predictd.access.scopes import SCOPES, Scope, parse_scopes
from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.services import Services

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


@keys_app.command()
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. checkout-service.")],
    scope: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(SCOPES)}.")],
) -> None:
    """Create a key and print it. It is shown this once: only its SHA-256 is stored."""
    name = name.strip()
    if not name or len(name) > 200:
        fail("--name: give 1 to 200 characters")
    try:
        scopes: frozenset[Scope] = parse_scopes(scope)
    except ValueError as exc:
        fail(f"--scope: {exc}")

    async def work(services: Services) -> tuple[str, dict[str, Any]]:
        return await services.key_service.create(name, scopes)

    key, row = run_with_services(work)
    typer.echo(key)
    typer.echo(
        f"created key {row['name']!r} ({', '.join(row['scopes'])}); store it now, it is not "
        "shown again",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """Keys as JSON lines: name, prefix, scopes, created, last used, revoked (never the key)."""

    async def work(services: Services) -> list[dict[str, Any]]:
        return await services.key_service.listing(include_revoked=all_)

    for row in run_with_services(work):
        typer.echo(json.dumps(row, default=str))


@keys_app.command()
def revoke(name: str) -> None:
    """Revoke the live key called NAME; every server refuses it within
    PREDICTD_KEYS_REFRESH_S."""

    async def work(services: Services) -> dict[str, Any]:
        return await services.key_service.revoke(name)

    row = run_with_services(work)
    typer.echo(f"revoked key {row['name']!r} ({row['prefix']}…)")
