"""`predictd models ...`: the registry from the command line."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar, cast

import typer

from predictd.cli.output import fail
from predictd.cli.runner import run_with_services
from predictd.inference.transformer_bundle import MAX_MODEL_BYTES
from predictd.monitoring.profile import validation_profiler
from predictd.registry.archives import as_artifact
from predictd.registry.datasets import DatasetFile
from predictd.registry.mlflow_import import MlflowImport, prepare_import
from predictd.registry.models import ModelVersion, Stage
from predictd.registry.service import ModelRegistry

models_app = typer.Typer(help="Register, list, promote and roll back model versions.")

T = TypeVar("T")


def _run(work: Callable[[ModelRegistry], Awaitable[T]]) -> T:
    """Registry commands migrate first where the server would, so they work on a new file."""
    return run_with_services(lambda services: work(services.registry), migrate_first=True)


def _line(v: ModelVersion) -> str:
    metrics = " ".join(f"{k}={val:.3f}" for k, val in sorted(v.metrics.items()))
    return f"{v.name}\tv{v.version}\t{v.stage}\t{v.algorithm or '-'}\t{metrics}"


@models_app.command()
def register(
    path: Annotated[
        Path,
        typer.Argument(
            help="A model file (.skops, .onnx; .pkl/.joblib only with PREDICTD_ALLOW_PICKLE), "
            "or a transformer export: the directory `optimum-cli export onnx` writes "
            "(model.onnx, tokenizer.json, config.json), or a .tar.gz/.zip of it.",
            metavar="FILE_DIR_OR_ARCHIVE",
        ),
    ],
    name: Annotated[str, typer.Option(help="Model name.")],
    stage: Annotated[str, typer.Option(help="none, staging or production.")] = "none",
    metrics_json: Annotated[
        Path | None, typer.Option(help='A JSON file of metrics, e.g. {"accuracy": 0.9}.')
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    training_data: Annotated[
        Path | None,
        typer.Option(
            help="The data the model was fitted on (.csv, .jsonl or .parquet): its label "
            "column and a `text` column (text models) or one column per feature; stored "
            "beside the artifact for `predictd train`, its rows counted as training_samples."
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="Labelled held-out data in the same layout (JSON lines may also nest "
            '{"features": {...}, "label": ...}): stored too; it makes the reference profile '
            "drift is measured against and calibrates a classifier's confidence for the "
            "monitor's label-free accuracy estimate."
        ),
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="The label column of --training-data and --validation.")
    ] = "label",
    tag: Annotated[
        list[str] | None,
        typer.Option(help="A label KEY=VALUE kept with the version (repeatable)."),
    ] = None,
    parent_version: Annotated[
        int | None,
        typer.Option(min=1, help="The version of NAME this one was derived from (lineage)."),
    ] = None,
) -> None:
    """Register PATH as the next version of NAME (its hyperparameters are read from it)."""
    if stage not in ("none", "staging", "production"):
        fail("--stage must be none, staging or production")
    tags = parse_tags(tag or [])
    metrics: dict[str, float] = {}
    if metrics_json is not None:
        try:
            loaded = json.loads(metrics_json.read_text())
            metrics = {str(k): float(v) for k, v in loaded.items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            fail(f"--metrics-json: expected a JSON object of numbers ({exc})")

    async def work(registry: ModelRegistry) -> ModelVersion:
        if parent_version is not None:
            await registry.get(name, parent_version)  # a parent that is not there: 404
        with tempfile.TemporaryDirectory(prefix="predictd-artifact-") as workdir:
            # A transformer export (directory or archive) is packed into one bundle first.
            artifact, notes = await asyncio.to_thread(
                as_artifact, path, Path(workdir), MAX_MODEL_BYTES
            )
            for note in notes:
                typer.echo(f"note: {note}", err=True)
            candidate = await asyncio.to_thread(
                partial(
                    registry.inspect,
                    artifact,
                    name,
                    metrics=metrics,
                    description=description,
                    tags=tags,
                    parent_version=parent_version,
                    training_data=_dataset(training_data, label_column, "--training-data"),
                    validation_data=_dataset(validation, label_column, "--validation"),
                    profile_validation=partial(validation_profiler, settings=registry.settings),
                )
            )
        return await registry.register(candidate, stage=cast(Stage, stage), reuse=False)

    version = _run(work)
    typer.echo(f"registered {version.name} v{version.version} ({version.stage})")
    for line in describe_data(version):
        typer.echo(line, err=True)


@models_app.command("import-mlflow")
def import_mlflow(
    source: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_RUNS_URI",
            help="An MLflow sklearn model directory (MLmodel + artifacts), a .tar.gz or .zip "
            "of one, or runs:/<run_id>/<artifact_path> or models:/... (needs a tracking store).",
        ),
    ],
    name: Annotated[str, typer.Option(help="Model name.")],
    stage: Annotated[str, typer.Option(help="none, staging or production.")] = "none",
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_TRACKING_URI",
            help="The MLflow tracking store (e.g. file:///srv/mlruns): runs:/ URIs are read "
            "from it, and the run's metrics and params become the version's metrics and "
            "hyperparameters. Needs pip install 'predictd[mlflow]'.",
        ),
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="A label KEY=VALUE kept with the version (repeatable)."),
    ] = None,
    max_size_mb: Annotated[
        int, typer.Option(min=1, help="Largest model file (and archive, unpacked) read.")
    ] = 1024,
) -> None:
    """Register an MLflow scikit-learn model as the next version of NAME, converted to skops:
    refused, with nothing registered, if it needs a type predictd does not trust."""
    if stage not in ("none", "staging", "production"):
        fail("--stage must be none, staging or production")
    tags = parse_tags(tag or [])

    async def work(registry: ModelRegistry) -> tuple[ModelVersion, MlflowImport]:
        with tempfile.TemporaryDirectory(prefix="predictd-mlflow-") as workdir:
            found = await asyncio.to_thread(
                partial(
                    prepare_import,
                    source,
                    Path(workdir),
                    registry.settings,
                    tracking_uri=tracking_uri or None,
                    max_bytes=max_size_mb * 1024 * 1024,
                )
            )
            candidate = await asyncio.to_thread(
                partial(
                    registry.inspect,
                    found.artifact,
                    name,
                    metrics=found.metrics,
                    description=description or f"imported from MLflow: {source}"[:500],
                    tags={**found.tags, **tags},
                    feature_names=found.feature_names,
                    hyperparameters=found.hyperparameters,
                )
            )
        return await registry.register(candidate, stage=cast(Stage, stage), reuse=False), found

    version, found = _run(work)
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)
    run = f", run {found.run_id}" if found.run_id else ""
    typer.echo(
        f"registered {version.name} v{version.version} ({version.stage}) from MLflow "
        f"({found.serialization_format}{run}: {len(version.metrics)} metrics, "
        f"{len(found.hyperparameters or {})} params)"
    )


def _dataset(path: Path | None, label: str, option: str) -> DatasetFile | None:
    return None if path is None else DatasetFile(path, label, option)


def describe_data(version: ModelVersion) -> list[str]:
    """What a person reads about a version's data and how it was trained, one line each."""
    lines = []
    for what, ref in (
        ("training data", version.training_data),
        ("validation data", version.validation_data),
    ):
        if ref:
            lines.append(
                f"{what}: {ref.get('format')}, {ref.get('rows')} rows, label "
                f"{ref.get('label')!r}, sha256 {str(ref.get('sha256'))[:12]}…"
            )
    run = version.training_run
    if run:
        rows = run.get("rows") or {}
        window = run.get("window") or {}
        lines.append(
            f"trained by predictd train from v{run.get('parent_version')}: "
            f"{rows.get('base')} base + {rows.get('train')} labelled rows fitted, "
            f"{rows.get('holdout')} held out, {rows.get('unusable_inputs')} unusable; "
            f"labels {window.get('start')} .. {window.get('end')}"
        )
        holdout = run.get("holdout") or {}
        lines.append(
            f"holdout: candidate {_scores(holdout.get('candidate'))}, production "
            f"{_scores(holdout.get('production'))}"
        )
        validation = run.get("validation")
        if validation:
            lines.append(
                f"validation data: candidate {_scores(validation.get('candidate'))}, "
                f"production {_scores(validation.get('production'))}"
            )
    return lines


def _scores(metrics: object) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return "-"
    return " ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
    )


TAG_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
MAX_TAGS, MAX_TAG_VALUE = 32, 256


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``--tag KEY=VALUE`` options: keys of letters, digits and ``_.:/-``; a bad one is
    named, not dropped."""
    if len(pairs) > MAX_TAGS:
        fail(f"--tag: at most {MAX_TAGS} tags")
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or TAG_KEY.fullmatch(key) is None:
            fail(f"--tag {pair!r}: expected KEY=VALUE, KEY of letters, digits and _.:/- "
                 "(at most 64)")  # fmt: skip
        if len(value) > MAX_TAG_VALUE or not value.isprintable():
            fail(f"--tag {key}: the value must be printable, at most {MAX_TAG_VALUE} characters")
        if key in tags:
            fail(f"--tag {key}: given twice")
        tags[key] = value
    return tags


@models_app.command("list")
def list_versions(
    name: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """List registered versions."""
    for version in _run(lambda registry: registry.list_versions(name)):
        typer.echo(_line(version))


@models_app.command()
def show(name: str, version: int) -> None:
    """Everything the registry knows about NAME VERSION, as JSON; its data and training run
    are also summed up for people on stderr."""
    found = _run(lambda registry: registry.get(name, version))
    typer.echo(json.dumps(found.to_json(), indent=2, default=str))
    for line in describe_data(found):
        typer.echo(line, err=True)


@models_app.command()
def promote(name: str, version: int) -> None:
    """Make NAME VERSION the production version (the previous one is archived)."""
    done = _run(lambda registry: registry.promote(name, version))
    typer.echo(f"{done.name} v{done.version} is now production")


@models_app.command()
def rollback(name: str) -> None:
    """Promote the version that was production before the current one."""
    done = _run(lambda registry: registry.rollback(name))
    typer.echo(f"rolled back: {done.name} v{done.version} is now production")


@models_app.command()
def stage(name: str, version: int) -> None:
    """Make NAME VERSION the candidate (staging): it takes the canary share and/or shadow
    traffic on servers that have PREDICTD_CANARY_PERCENT or PREDICTD_SHADOW set."""
    done = _run(lambda registry: registry.stage(name, version))
    typer.echo(f"{done.name} v{done.version} is now staging")


@models_app.command()
def archive(name: str, version: int) -> None:
    """Archive NAME VERSION (not the production one: promote or roll back first)."""
    done = _run(lambda registry: registry.archive(name, version))
    typer.echo(f"{done.name} v{done.version} archived")
