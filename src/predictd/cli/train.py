"""`predictd train`: an unstaged candidate from the production version's training data and the
labelled predictions since; progress on stderr, the result on stdout."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.durations import parse_duration
from predictd.errors import InvalidInput
from predictd.retraining import RetrainOptions, RetrainResult, parse_params, retrain
from predictd.settings import Settings


def train(
    model: Annotated[str, typer.Option(help="The model to retrain (its production version).")],
    since: Annotated[
        str | None,
        typer.Option(
            help="How far back labelled predictions are read, e.g. 30d, 12h "
            "(default PREDICTD_RETRAIN_SINCE)."
        ),
    ] = None,
    min_labelled: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fewer usable labelled predictions: no candidate, exit 1 "
            "(default PREDICTD_RETRAIN_MIN_LABELLED).",
        ),
    ] = None,
    recent_weight: Annotated[
        float | None,
        typer.Option(
            help="Sample weight of a labelled prediction; a registered training "
            "row weighs 1 (default PREDICTD_RETRAIN_RECENT_WEIGHT)."
        ),
    ] = None,
    no_base_data: Annotated[
        bool,
        typer.Option(
            "--no-base-data",
            help="Fit on the labelled predictions only, leaving "
            "out the production version's registered training data.",
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="A hyperparameter to change, KEY=VALUE with a get_params key "
            "(e.g. clf__C=0.5; the value is read as JSON, else as text); repeatable."
        ),
    ] = None,
    holdout: Annotated[
        float | None,
        typer.Option(
            help="Share of the labelled predictions, the newest, kept out of fitting "
            "to score candidate and production on (default PREDICTD_RETRAIN_HOLDOUT)."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON instead of a summary line.")
    ] = False,
) -> None:
    """Fit a clone of MODEL's production estimator on its registered training data plus the
    labelled predictions since --since (those weighted --recent-weight), score it and
    production on the newest --holdout share, and register it unstaged (nothing is
    promoted)."""
    settings = Settings()
    try:
        span = parse_duration(since) if since is not None else None
    except ValueError as exc:
        fail(f"--since {exc}")
    try:
        options = RetrainOptions.from_settings(
            model,
            settings.retraining,
            since=span,
            min_labelled=min_labelled,
            recent_weight=recent_weight,
            holdout=holdout,
            base_data=not no_base_data,
            params=parse_params(param or []),
        )
    except InvalidInput as exc:
        field = exc.field or ""
        if field in ("since", "min_labelled", "recent_weight", "holdout"):
            fail(exc.message.replace(field, f"--{field.replace('_', '-')}", 1))
        fail(exc.message)

    def progress(message: str) -> None:
        typer.echo(message, err=True)

    result: RetrainResult = run_with_services(
        lambda services: retrain(services.db, services.registry, options, progress),
        settings=settings,
        migrate_first=True,
    )
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        typer.echo(result.summary())
