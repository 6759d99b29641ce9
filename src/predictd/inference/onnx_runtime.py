"""Runtime for ONNX models (scikit-learn pipelines converted with skl2onnx, or any other
producer), run by onnxruntime on the CPU.

An ONNX file is a graph of standard operators, not code, so loading one executes nothing from
the file. What predictd reads from the model:

- execution providers: ``PREDICTD_ONNX_PROVIDERS`` (CPU by default), as available.
- input: exactly one tensor. ``float``/``double`` of shape ``[N, n_features]`` is tabular;
  ``string`` of shape ``[N]`` or ``[N, 1]`` is text. The batch dimension must be dynamic.
- feature names: the model's ``metadata_props`` key ``feature_names`` (a JSON list) when
  present, else positional ``x0..x{n-1}`` (the registry may name them).
- task: classification when an output holds probabilities (a ZipMap ``seq(map(...))``, a float
  ``[N, k]`` output whose name contains "prob", or the only float ``[N, k]`` output beside a
  label output: skl2onnx's layouts with and without ZipMap); regression otherwise, from the
  first float output (one value per row).
- classes, in probability-column order: ``metadata_props`` ``classes`` (a JSON list) when
  present, which works for any producer; else the labels the graph itself declares on its
  ZipMap node or, failing that, its one ``ai.onnx.ml`` classifier node (``classlabels_*``
  attributes, which skl2onnx always writes). Reading the graph needs the ``onnx`` package. A
  graph whose classes can't be found this way (e.g. raw logits) must carry ``classes``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictd.errors import ArtifactError
from predictd.inference.runtime import (
    InputKind,
    Label,
    ModelInput,
    ModelMeta,
    ModelRuntime,
    Prediction,
    RuntimeDetails,
    Schema,
    Task,
    from_probabilities,
    from_values,
)

log = logging.getLogger("predictd.inference")

INSTALL_HINT = "pip install 'predictd[onnx]'"
CPU = "CPUExecutionProvider"
_FLOATS = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_LABEL_TENSORS = {"tensor(int64)", "tensor(string)", "tensor(int32)"}
_LABEL_ATTRIBUTES = {"classlabels_strings", "classlabels_ints", "classlabels_int64s"}


def usable_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """``wanted`` in order (PREDICTD_ONNX_PROVIDERS), less what this onnxruntime build lacks
    (CUDA without onnxruntime-gpu), with the CPU as the last resort."""
    chosen = [p for p in wanted if p in available]
    skipped = [p for p in wanted if p not in available]
    if skipped:
        log.warning(
            "ONNX Runtime execution providers not available here; skipped",
            extra={"skipped": skipped, "available": list(available)},
        )
    return chosen if CPU in chosen else [*chosen, CPU]


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ArtifactError(f"ONNX models need onnxruntime: {INSTALL_HINT}") from exc
    return onnxruntime


def _json_list(metadata: Mapping[str, str], key: str, path: Path) -> list[Any] | None:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not value:
        raise ArtifactError(f"{path.name}: metadata_props {key!r} must be a non-empty JSON list")
    return value


def graph_classes(path: Path) -> tuple[Label, ...] | None:
    """The class labels the graph declares (ZipMap first, else its one classifier node), or
    None when it declares none or several different lists."""
    try:
        import onnx
    except ImportError as exc:
        raise ArtifactError(
            f"{path.name}: reading an ONNX classifier's classes needs the onnx package "
            f"({INSTALL_HINT}), or store them in the model's metadata_props 'classes'"
        ) from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no stable public type
        raise ArtifactError(f"{path.name}: could not read the ONNX graph: {exc}") from exc
    zipmaps: list[tuple[Label, ...]] = []
    classifiers: list[tuple[Label, ...]] = []
    for node in model.graph.node:
        is_zipmap = node.op_type == "ZipMap"
        if node.domain != "ai.onnx.ml" or not (is_zipmap or node.op_type.endswith("Classifier")):
            continue
        for attr in node.attribute:
            if attr.name not in _LABEL_ATTRIBUTES:
                continue
            labels: tuple[Label, ...] = (
                tuple(s.decode("utf-8") for s in attr.strings)
                if attr.name == "classlabels_strings"
                else tuple(int(i) for i in attr.ints)
            )
            if labels:
                (zipmaps if is_zipmap else classifiers).append(labels)
    found = zipmaps or classifiers
    return found[0] if found and len(set(found)) == 1 else None


def _unwrap_name(graph_name: str) -> str:
    match = re.fullmatch(r"ONNX\((.+)\)", graph_name)  # skl2onnx names graphs ONNX(Estimator)
    return match.group(1) if match else graph_name


class OnnxRuntime(ModelRuntime):
    flavor = "onnx"

    def __init__(
        self, path: Path, meta: ModelMeta, threads: int = 1, providers: Sequence[str] = (CPU,)
    ) -> None:
        super().__init__(path, meta)
        self.providers = tuple(providers)
        # Calls already run on several worker threads; one ORT thread each avoids
        # oversubscribing the CPU.
        self.threads = threads
        self._session: Any = None
        self._schema: Schema | None = None
        self._input_name = ""
        self._input_dtype: Any = np.float32
        self._text_rank = 1
        self._output = ""
        self._zipmap = False

    def load(self) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only; failures surface as exceptions anyway
        try:
            session = ort.InferenceSession(
                str(self.path),
                sess_options=options,
                providers=usable_providers(self.providers, ort.get_available_providers()),
            )
        except Exception as exc:  # onnxruntime's own exception types, not importable stably
            raise ArtifactError(self._load_failure(exc)) from exc
        self._session = session
        self._schema = self._read_schema(session)

    def _load_failure(self, exc: Exception) -> str:
        message = f"{self.path.name} is not a model onnxruntime can load: {str(exc).strip()}"
        if "locale" in str(exc):
            message += (
                "; re-convert it with a locale this host has, e.g. skl2onnx "
                "options={TfidfVectorizer: {'locale': 'C'}}"
            )
        return message

    def _read_schema(self, session: Any) -> Schema:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            found = [i.name for i in inputs]
            raise ArtifactError(
                f"{self.path.name} has inputs {found}; predictd feeds one tensor: convert the "
                "model with a single [N, n_features] float input or a string input"
            )
        meta = session.get_modelmeta()
        metadata: dict[str, str] = dict(meta.custom_metadata_map)
        named = _json_list(metadata, "feature_names", self.path)
        input_kind, names = self._read_input(inputs[0], named)
        task, classes = self._read_output(session.get_outputs(), metadata)
        algorithm = metadata.get("algorithm") or _unwrap_name(meta.graph_name or "") or "onnx"
        return Schema(
            input_kind=input_kind,
            task=task,
            feature_names=names,
            classes=classes,
            algorithm=algorithm,
            positional=input_kind == "tabular" and named is None,
        )

    def _read_input(self, arg: Any, named: list[Any] | None) -> tuple[InputKind, tuple[str, ...]]:
        shape = list(arg.shape)
        self._input_name = arg.name
        if shape and isinstance(shape[0], int) and shape[0] > 0:
            raise ArtifactError(
                f"{self.path.name} takes a fixed batch of {shape[0]}: convert it with a dynamic "
                "first dimension (skl2onnx does by default)"
            )
        one_column = len(shape) == 2 and not (isinstance(shape[1], int) and shape[1] > 1)
        if arg.type == "tensor(string)" and (len(shape) == 1 or one_column):
            self._text_rank = len(shape)
            return "text", ()
        if arg.type not in _FLOATS or len(shape) != 2:
            raise ArtifactError(
                f"{self.path.name} takes {arg.type} of shape {shape}; predictd serves a float "
                "tensor [N, n_features] (tabular) or a string tensor [N] or [N, 1] (text)"
            )
        self._input_dtype = _FLOATS[arg.type]
        width = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else None
        if named is not None:
            if width is not None and width != len(named):
                raise ArtifactError(
                    f"{self.path.name}: metadata_props feature_names lists {len(named)} names "
                    f"but the input has {width} columns"
                )
            return "tabular", tuple(str(n) for n in named)
        if width is None:
            raise ArtifactError(
                f"{self.path.name}: cannot tell how many features the input {shape} takes; "
                "add metadata_props 'feature_names' (a JSON list) to the model"
            )
        return "tabular", tuple(f"x{i}" for i in range(width))

    def _read_output(
        self, outputs: Sequence[Any], metadata: Mapping[str, str]
    ) -> tuple[Task, tuple[Label, ...]]:
        declared = _json_list(metadata, "classes", self.path)
        proba = self._probability_output(outputs, declared is not None)
        if proba is None:
            value = next((o for o in outputs if o.type in _FLOATS), None)
            if value is None:
                raise ArtifactError(
                    f"{self.path.name} has no float output to read a prediction from"
                )
            width = list(value.shape)[1:]
            if any(isinstance(d, int) and d > 1 for d in width):
                raise ArtifactError(
                    f"{self.path.name} outputs {value.shape} per call; predictd serves one "
                    "value per row (a single-target regressor) or class probabilities"
                )
            self._output = value.name
            return "regression", ()
        self._output = proba.name
        self._zipmap = proba.type.startswith("seq(map(")
        classes = self._classes(declared)
        width = list(proba.shape)[1:2]
        if width and isinstance(width[0], int) and width[0] != len(classes):
            raise ArtifactError(
                f"{self.path.name} outputs {width[0]} probabilities but names {len(classes)} "
                "classes; fix metadata_props 'classes'"
            )
        return "classification", classes

    @staticmethod
    def _probability_output(outputs: Sequence[Any], declared: bool) -> Any:
        zipmap = [o for o in outputs if o.type.startswith("seq(map(")]
        if zipmap:
            return zipmap[0]
        matrices = [o for o in outputs if o.type in _FLOATS and len(o.shape) == 2]
        named = [o for o in matrices if "prob" in o.name.lower()]
        if named:
            return named[0]
        labels = [o for o in outputs if o.type in _LABEL_TENSORS and len(o.shape) == 1]
        if len(matrices) == 1 and (labels or declared):
            return matrices[0]
        return None

    def _classes(self, declared: list[Any] | None) -> tuple[Label, ...]:
        if declared is not None:
            if not all(isinstance(c, str | int | float | bool) for c in declared):
                raise ArtifactError(
                    f"{self.path.name}: metadata_props 'classes' must list strings or numbers"
                )
            return tuple(declared)
        found = graph_classes(self.path)
        if found is None:
            raise ArtifactError(
                f"{self.path.name} is a classifier whose classes its graph does not declare "
                "unambiguously; add metadata_props 'classes' (a JSON list in probability "
                "column order) to the model"
            )
        return found

    def details(self) -> RuntimeDetails:
        providers = tuple(self._session.get_providers()) if self._session is not None else ()
        return RuntimeDetails(execution_providers=providers)

    def schema(self) -> Schema:
        if self._schema is None:
            raise ArtifactError(f"{self.path.name}: schema() called before load()")
        return self._schema

    def _feed(self, inputs: Sequence[ModelInput]) -> Any:
        if self.meta.input_kind == "text":
            texts = np.array([t for t in inputs if isinstance(t, str)], dtype=object)
            return texts.reshape(-1, 1) if self._text_rank == 2 else texts
        names = self.meta.feature_names
        return np.array(
            [[row[n] for n in names] for row in inputs if isinstance(row, Mapping)],
            dtype=self._input_dtype,
        ).reshape(len(inputs), len(names))

    def predict(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        [raw] = self._session.run([self._output], {self._input_name: self._feed(inputs)})
        if self.meta.task == "regression":
            return from_values(raw, len(inputs))
        keys = [str(c) for c in self.meta.classes]
        if self._zipmap:  # one {class: probability} dict per row, int or str keys
            rows = ({str(k): v for k, v in row.items()} for row in raw)
            proba = np.array([[row[k] for k in keys] for row in rows], dtype=np.float64)
        else:
            proba = np.asarray(raw, dtype=np.float64).reshape(len(inputs), len(keys))
        return from_probabilities(proba, self.meta.classes)
