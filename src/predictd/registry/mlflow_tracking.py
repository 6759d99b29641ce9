"""MLflow's tracking store: ``runs:/`` and ``models:/`` URIs, and a run's metrics and params.

The one part of an MLflow import that needs MLflow itself (``pip install 'predictd[mlflow]'``);
it is imported only here, only when a tracking store is used. What it downloads is read as
untrusted like any other model directory (registry/mlflow_model.py).
"""

from __future__ import annotations

import importlib
import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictd.errors import ArtifactError
from predictd.observability import redact

MLFLOW_HINT = "pip install 'predictd[mlflow]'"
REMOTE_SCHEMES = ("runs:/", "models:/")
RUNS_URI = re.compile(r"runs:/([A-Za-z0-9_-]{1,64})/([^\x00]+)")


@dataclass(frozen=True, slots=True)
class RunData:
    """What a run logged: each metric's latest value, and its params as logged (strings).
    ``skipped``: metrics left out because their value is not a finite number."""

    metrics: dict[str, float]
    params: dict[str, str]
    skipped: tuple[str, ...] = ()


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def run_id_of(uri: str) -> str | None:
    """The run a ``runs:/<run_id>/<artifact_path>`` URI names; None for ``models:/``."""
    if not uri.startswith("runs:/"):
        return None
    found = RUNS_URI.fullmatch(uri)
    if found is None or ".." in found.group(2).split("/"):
        raise ArtifactError(f"{uri!r}: expected runs:/<run_id>/<artifact_path>")
    return found.group(1)


def _mlflow(what: str) -> Any:
    # predictd sends nothing anywhere unless told to: MLflow's usage telemetry stays off
    # unless the operator turned it on explicitly.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow 3 refuses to open a file: tracking store unless this is set; predictd only reads
    # runs and artifacts from it, so `--tracking-uri file:///...` works as documented.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        with _quiet():
            return importlib.import_module("mlflow")
    except ImportError as exc:
        raise ArtifactError(f"{what} needs MLflow: {MLFLOW_HINT}") from exc


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow warns about its own internals (type hints of its agent APIs, deprecations) as
    it imports them: nothing an operator importing a model can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: BaseException) -> str:
    text = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
    return redact(text[:300])


def download(uri: str, tracking_uri: str, dst: Path, max_bytes: int) -> Path:
    """Download the model directory ``uri`` names into ``dst``; its local path. The store's
    listing is summed first, so a directory larger than ``max_bytes`` (or of more than
    MAX_FILES files) is refused before a byte of it is fetched; what arrives is measured
    again, since a listing may leave sizes out."""
    mlflow = _mlflow(f"importing {uri}")
    dst.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            _listed_bytes(mlflow, uri, tracking_uri, max_bytes)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri
            )
    except ArtifactError:
        raise
    except Exception as exc:  # MLflow raises its own, and the store's, errors
        raise ArtifactError(
            f"could not download {uri} from {redact(tracking_uri)}: {_first_line(exc)}"
        ) from exc
    path = Path(local).resolve()
    if not path.is_relative_to(dst.resolve()):
        raise ArtifactError(f"MLflow put {uri} outside the download directory; refused")
    _check_size(uri, _downloaded_bytes(dst), max_bytes)
    return path


MAX_FILES = 10_000


def _check_size(uri: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ArtifactError(f"{uri} holds more than {max_bytes} bytes; refused")


def _listed_bytes(mlflow: Any, uri: str, tracking_uri: str, max_bytes: int) -> int:
    """Bytes the store lists under ``uri``, walking its directories (at most MAX_FILES)."""
    total, files, pending = 0, 0, [uri.rstrip("/")]
    while pending:
        here = pending.pop()
        for info in mlflow.artifacts.list_artifacts(artifact_uri=here, tracking_uri=tracking_uri):
            files += 1
            if files > MAX_FILES:
                raise ArtifactError(f"{uri} holds more than {MAX_FILES} files; refused")
            child = f"{here}/{info.path.rstrip('/').rsplit('/', 1)[-1]}"
            if info.is_dir:
                pending.append(child)
            else:
                total += int(info.file_size or 0)
                _check_size(uri, total, max_bytes)
    return total


def _downloaded_bytes(dst: Path) -> int:
    total = 0
    for path in dst.rglob("*"):
        info = path.lstat()
        if path.is_symlink():
            raise ArtifactError(f"the download holds a link, {path.name!r}; refused")
        total += info.st_size if path.is_file() else 0
    return total


def run_data(run_id: str, tracking_uri: str) -> RunData:
    """The run's metrics and params; ArtifactError when the store has no such run."""
    mlflow = _mlflow(f"reading run {run_id}")
    try:
        with _quiet():
            run = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except Exception as exc:  # MLflow raises its own, and the store's, errors
        raise ArtifactError(
            f"could not read run {run_id} from {redact(tracking_uri)}: {_first_line(exc)}"
        ) from exc
    metrics: dict[str, float] = {}
    skipped = []
    for key, value in run.data.metrics.items():
        number = float(value)
        if math.isfinite(number):
            metrics[str(key)] = number
        else:
            skipped.append(str(key))
    params = {str(k): str(v) for k, v in run.data.params.items()}
    return RunData(metrics, params, tuple(sorted(skipped)))


__all__ = ["RunData", "download", "is_remote", "run_data", "run_id_of"]
