"""Importing an MLflow scikit-learn model: from a directory, an archive of one, or a
``runs:/``/``models:/`` URI to a skops file the registry can register, with the version's
feature names (from the signature), metrics and hyperparameters (from the run) and tags.

The model file is untrusted. A skops file is checked name by name before it is loaded
(inference/skops_trust.py); a pickle's opcodes are read, never run, and it is refused unless
every global it names is trusted (inference/pickle_trust.py), then loaded by an unpickler
that can import only those names and saved again with skops. Registration then loads the
skops file through the normal path, which checks it once more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predictd.errors import ArtifactError, artifact_file_errors
from predictd.inference.pickle_trust import load_pickle
from predictd.inference.sklearn_runtime import describe_estimator, load_estimator
from predictd.registry.archives import EXTRA_BYTES, is_archive, unpack
from predictd.registry.mlflow_model import MlflowModel, feature_names, read_bounded
from predictd.registry.mlflow_model import read_mlflow_model as read_model
from predictd.registry.mlflow_tracking import download, is_remote, run_data, run_id_of
from predictd.settings import InferenceSettings

MAX_TAG_VALUE = 256


@dataclass(frozen=True, slots=True)
class MlflowImport:
    """What to register: the converted skops file and what MLflow knew about it."""

    artifact: Path
    serialization_format: str
    feature_names: tuple[str, ...] | None
    metrics: dict[str, float]
    hyperparameters: dict[str, Any] | None  # None: the estimator's own get_params()
    tags: dict[str, str]
    run_id: str | None
    notes: list[str] = field(default_factory=list)  # for the operator, one line each


def prepare_import(
    source: str,
    workdir: Path,
    settings: InferenceSettings,
    *,
    tracking_uri: str | None,
    max_bytes: int,
) -> MlflowImport:
    """Read, check and convert the model ``source`` names into ``workdir`` (blocking).
    Raises ArtifactError (UntrustedArtifact for a type that is not trusted); nothing is
    stored anywhere but ``workdir``."""
    with artifact_file_errors(f"could not read {source}"):
        return _prepare(source, workdir, settings, tracking_uri, max_bytes)


def _prepare(
    source: str, workdir: Path, settings: InferenceSettings, tracking_uri: str | None,
    max_bytes: int,
) -> MlflowImport:  # fmt: skip
    notes: list[str] = []
    uri_run = None
    if is_remote(source):
        if not tracking_uri:
            raise ArtifactError(
                f"{source} needs a tracking store: --tracking-uri or MLFLOW_TRACKING_URI"
            )
        uri_run = run_id_of(source)
        root = download(source, tracking_uri, workdir / "download", max_bytes + EXTRA_BYTES)
    else:
        path = Path(source.removeprefix("file://"))
        if path.is_file() and is_archive(path):
            root = unpack(path, workdir / "unpacked", max_bytes)
        elif path.is_dir():
            root = path
        else:
            raise ArtifactError(
                f"{source} is neither an MLflow model directory, a .tar.gz or .zip of one, "
                "nor a runs:/ or models:/ URI"
            )
    model = read_model(root, max_bytes)
    artifact = workdir / "model.skops"
    estimator = convert(model, artifact, settings.trusted_types, max_bytes)
    names = feature_names(model.signature, describe_estimator(estimator))
    if model.signature is None:
        notes.append("MLmodel has no signature: the features are the model's own")
    run_id = uri_run or model.run_id
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if run_id and tracking_uri:
        found = run_data(run_id, tracking_uri)
        metrics, params = found.metrics, found.params
        if found.skipped:
            notes.append(f"metrics left out (not finite): {', '.join(found.skipped)}")
    elif run_id:
        notes.append(
            f"MLmodel names run {run_id}: give --tracking-uri (or MLFLOW_TRACKING_URI) to "
            "import its metrics and params"
        )
    tags = {"mlflow.serialization_format": model.serialization_format}
    for key, value in (
        ("mlflow.run_id", run_id),
        ("mlflow.model_id", model.model_id),
        ("mlflow.version", model.mlflow_version),
        ("mlflow.source", source if is_remote(source) else None),
    ):
        if value and len(value) <= MAX_TAG_VALUE and value.isprintable():
            tags[key] = value
    return MlflowImport(
        artifact=artifact,
        serialization_format=model.serialization_format,
        feature_names=names,
        metrics=metrics,
        hyperparameters=params or None,
        tags=tags,
        run_id=run_id,
        notes=notes,
    )


def convert(model: MlflowModel, out: Path, trusted: list[str], max_bytes: int) -> Any:
    """Write the model as skops to ``out``; the estimator, loaded only after its names were
    checked. The file is read once, so what is checked is what is loaded."""
    data = read_bounded(model.model_file, max_bytes)
    name = model.model_file.name
    if model.serialization_format == "skops":
        out.write_bytes(data)
        return load_estimator(out, trusted)
    estimator = load_pickle(data, name, trusted)
    if not callable(getattr(estimator, "predict", None)):
        raise ArtifactError(
            f"{name} holds a {type(estimator).__name__}, not a fitted scikit-learn-style "
            "estimator with predict()"
        )
    from skops.io import dump

    try:
        dump(estimator, out)
    except Exception as exc:  # skops refuses objects it cannot write in many ways
        raise ArtifactError(f"could not save {name} as skops: {exc!r}") from exc
    return estimator


__all__ = ["MlflowImport", "convert", "prepare_import"]
