"""Entry point: `predictd serve`, `predictd demo`, `predictd db ...`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from predictd.cli.actions import actions_app
from predictd.cli.alerts import alerts_app
from predictd.cli.db import db_app
from predictd.cli.drift import drift_app
from predictd.cli.keys import keys_app
from predictd.cli.models import models_app
from predictd.cli.monitor import monitor_app
from predictd.cli.output import CommandGroup, fail
from predictd.cli.runner import run_with_services
from predictd.cli.train import train
from predictd.settings import Settings
from predictd.worker_metrics import shared_metrics_dir

app = typer.Typer(
    name="predictd",
    help="Serve trained Python models over HTTP and keep every prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=CommandGroup,  # any escaped exception is `error:` lines and exit 1
)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")
app.add_typer(alerts_app, name="alerts")
app.add_typer(actions_app, name="actions")
app.add_typer(drift_app, name="drift")
app.add_typer(keys_app, name="keys")
app.command()(train)
log = logging.getLogger("predictd.cli")

Host = Annotated[str | None, typer.Option(help="Address to bind (default PREDICTD_HOST).")]
Port = Annotated[int | None, typer.Option(help="Port to listen on (default PREDICTD_PORT).")]


def _serve(
    settings: Settings, host: str | None, port: int | None, workers: int, *, insecure: bool = False
) -> None:
    from predictd.access.exposure import exposure_problem, is_loopback

    # What the server runs with, whole: the app checks exposure against this host too.
    settings = settings.replace(
        host=host or settings.server.host, port=port or settings.server.port
    )
    if insecure:
        settings = settings.replace(insecure_no_auth=True)
    bind = settings.server.host
    # The app factory refuses the same (for uvicorn and granian too); said here first, as
    # the one line a command should print rather than a traceback from inside uvicorn.
    problem = exposure_problem(settings.access, bind, allow="pass --insecure-no-auth")
    if problem is not None:
        fail(problem)
    if settings.access.auth == "off" and not is_loopback(bind):  # allowed by --insecure-no-auth
        log.warning(
            "serving without authentication on a non-loopback address", extra={"host": bind}
        )
    # uvicorn re-raises the signal it stopped on after a clean shutdown; with this handler
    # in place that re-raise becomes exit status 0, which is what SIGTERM should give.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from predictd.server import DrainingServer, ServerConfig, run_workers

    if workers > 1:
        with shared_metrics_dir():
            run_workers(ServerConfig(settings, workers=workers))
        return
    DrainingServer(ServerConfig(settings)).run()


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Serve this artifact as the default model (registered on startup): a model "
            "file, or a transformer export directory or its .tar.gz/.zip."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Allow PREDICTD_AUTH=off on a non-loopback address (something in front "
            "authenticates).",
        ),
    ] = False,
) -> None:
    """Serve the production version of every registered model (PREDICTD_MODELS picks which),
    and the artifact given with --model as the default one."""
    settings = Settings()
    if model is not None:
        if not (model.is_file() or model.is_dir()):
            fail(f"no artifact at {model}")
        settings = settings.replace(model_path=model.resolve())
    _serve(settings, host, port, workers, insecure=insecure_no_auth)


@app.command()
def demo(
    tabular: Annotated[
        bool, typer.Option("--tabular", help="The RandomForest on breast-cancer data.")
    ] = False,
    transformer: Annotated[
        bool,
        typer.Option(
            "--transformer",
            help="A small transformer-style classifier (WordPiece tokenizer + ONNX graph) "
            "built offline in the Hugging Face export layout; needs predictd[transformers].",
        ),
    ] = False,
    host: Host = None,
    port: Port = None,
) -> None:
    """Train and register the demo model (reused when already registered), then serve it
    (without API keys unless PREDICTD_AUTH=on is set: the demo binds loopback)."""
    from predictd.cli.demo import DemoKind, prepare_demo

    if tabular and transformer:
        fail("--tabular and --transformer are two different demos: choose one")
    kind: DemoKind = "tabular" if tabular else "transformer" if transformer else "sentiment"
    settings = Settings(auth=os.environ.get("PREDICTD_AUTH", "off"))
    name = run_with_services(
        lambda services: prepare_demo(services.registry, kind=kind), settings=settings
    )
    settings = settings.replace(model_name=name)
    _serve(settings, host, port, workers=1)


def main() -> None:
    app()
