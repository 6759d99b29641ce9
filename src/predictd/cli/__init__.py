"""The `predictd` command line (Typer): thin commands over the same services as the API."""

from predictd.cli.main import app, main

__all__ = ["app", "main"]
