"""Which runtime opens an artifact. The flavor is read off the file suffix at registration
and stored with the version; loading goes by the stored flavor. A transformer export (a
directory, or a .tar.gz/.zip of one) is first packed into one bundle file
(``registry.archives.as_artifact``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from predictd.errors import ArtifactError
from predictd.inference import transformer_bundle
from predictd.inference.onnx_runtime import OnnxRuntime
from predictd.inference.pickle_runtime import PickleRuntime
from predictd.inference.runtime import ModelMeta, ModelRuntime, Schema
from predictd.inference.sklearn_runtime import SklearnRuntime
from predictd.settings import InferenceSettings

RuntimeFactory = Callable[[Path, ModelMeta, InferenceSettings], ModelRuntime]


def _sklearn(path: Path, meta: ModelMeta, settings: InferenceSettings) -> ModelRuntime:
    return SklearnRuntime(path, meta, settings.trusted_types)


def _pickle(path: Path, meta: ModelMeta, settings: InferenceSettings) -> ModelRuntime:
    # Raises unless PREDICTD_ALLOW_PICKLE is on, before anything reads the file.
    return PickleRuntime(path, meta, allow_pickle=settings.allow_pickle)


def _onnx(path: Path, meta: ModelMeta, settings: InferenceSettings) -> ModelRuntime:
    return OnnxRuntime(path, meta, providers=settings.onnx_providers)


def _transformer(path: Path, meta: ModelMeta, settings: InferenceSettings) -> ModelRuntime:
    from predictd.inference.transformer_runtime import TransformerRuntime

    return TransformerRuntime(path, meta, providers=settings.onnx_providers)


FACTORIES: dict[str, RuntimeFactory] = {
    "sklearn": _sklearn,
    "pickle": _pickle,
    "onnx": _onnx,
    "transformer": _transformer,
}
SUFFIXES: dict[str, str] = {
    ".skops": "sklearn",
    ".onnx": "onnx",
    transformer_bundle.SUFFIX: "transformer",
    ".joblib": "pickle",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


def flavor_of(path: Path) -> str:
    """The flavor for a file; an unknown suffix is tried as skops, which refuses it clearly."""
    return SUFFIXES.get(path.suffix.lower(), "sklearn")


def runtime_for(
    flavor: str, path: Path, meta: ModelMeta, settings: InferenceSettings
) -> ModelRuntime:
    factory = FACTORIES.get(flavor)
    if factory is None:
        raise ArtifactError(f"no runtime for flavor {flavor!r}; known: {sorted(FACTORIES)}")
    return factory(path, meta, settings)


def inspect_artifact(path: Path, settings: InferenceSettings) -> tuple[str, Schema]:
    """Load the file (blocking) and read its flavor and schema; raises ArtifactError."""
    flavor, runtime = open_artifact(path, settings)
    return flavor, runtime.schema()


def open_artifact(path: Path, settings: InferenceSettings) -> tuple[str, ModelRuntime]:
    """Load the file (blocking) into a runtime that can predict; raises ArtifactError. The
    runtime's identity is a placeholder until the registry gives it one."""
    flavor = flavor_of(path)
    placeholder = ModelMeta(
        name=path.stem,
        version=0,
        flavor=flavor,
        sha256="",
        input_kind="tabular",
        task="regression",
        loaded_at=datetime.now(UTC),
    )
    runtime = runtime_for(flavor, path, placeholder, settings)
    runtime.load()
    schema = runtime.schema()
    # The placeholder's schema becomes the artifact's own, so inputs validate against it.
    runtime.meta = replace(
        placeholder,
        input_kind=schema.input_kind,
        task=schema.task,
        feature_names=schema.feature_names,
        classes=schema.classes,
    )
    return flavor, runtime
