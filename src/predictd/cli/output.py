"""How commands report: one line on stderr and exit code 1 for any expected failure, and
`error:` lines (never a traceback) for whatever a command lets escape."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from predictd.errors import PredictdError
from predictd.observability import redact
from predictd.settings import Settings, describe_errors


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def describe(exc: Exception) -> list[str]:
    """What the operator reads for an exception: a bad setting names its variable (one line
    each), our own errors their message, anything else its type and first line, with any
    credentials taken out."""
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return describe_errors(exc)
    if isinstance(exc, PredictdError):
        return [exc.message]
    first = next(iter(str(exc).strip().splitlines()), "")
    return [redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)]


class CommandGroup(TyperGroup):
    """The `predictd` group: every command runs inside it, so one place turns an exception
    that escaped a command into `error:` lines and exit status 1. Typer's own exits, aborts
    and usage errors pass through unchanged."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            for line in describe(exc):
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code=1) from None
