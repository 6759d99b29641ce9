"""An MLflow scikit-learn model directory (``MLmodel`` + artifacts), read as untrusted input.

Nothing here needs MLflow. ``MLmodel`` is YAML read with ``yaml.safe_load`` (no tags that
build objects) after a size check; the model file is the exact name its ``sklearn`` flavor
gives, refused when that name is absolute, climbs out with ``..``, is a link or is not a
regular file, or is larger than allowed. The file itself is never opened here: conversion
(registry/mlflow_import.py) checks what it may rebuild before loading it.

MLflow's signature becomes predictd's input schema: a column-based signature names the
features (every column numeric), a text model takes one string column, and a tensor
signature must be one ``[-1, n]`` numeric tensor (features stay ``x0 … xn-1``).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from predictd.errors import ArtifactError
from predictd.inference.runtime import Schema

MLMODEL = "MLmodel"
MAX_MLMODEL_BYTES = 1024 * 1024
FORMATS = ("skops", "cloudpickle", "pickle")  # MLflow's sklearn serialization_format values
# MLflow's column types that predictd takes as numbers (booleans as 0/1).
NUMERIC_COLUMNS = frozenset({"double", "float", "long", "integer", "boolean"})
NUMERIC_DTYPES = re.compile(r"(float|int|uint)(8|16|32|64)|bool")
TEXT_DTYPES = frozenset({"str", "object"})
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_FEATURES = 100_000


@dataclass(frozen=True, slots=True)
class Column:
    name: str | None
    type: str


@dataclass(frozen=True, slots=True)
class Signature:
    """An MLflow input signature: named columns, or one tensor (``tensor_shape``)."""

    columns: tuple[Column, ...] = ()
    tensor_dtype: str | None = None
    tensor_shape: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MlflowModel:
    root: Path
    model_file: Path
    serialization_format: str
    signature: Signature | None
    run_id: str | None
    model_id: str | None
    mlflow_version: str | None


def read_mlflow_model(root: Path, max_bytes: int) -> MlflowModel:
    """Read and check ``root/MLmodel``; ArtifactError naming the problem otherwise."""
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a directory with an MLmodel file")
    meta = _read_yaml(member(root, MLMODEL, MAX_MLMODEL_BYTES))
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise ArtifactError(f"{MLMODEL}: no flavors")
    sklearn = flavors.get("sklearn")
    if sklearn is None:
        names = ", ".join(sorted(k[:40] for k in flavors if isinstance(k, str))[:10])
        raise ArtifactError(
            f"{MLMODEL} has the flavors {names}; predictd imports MLflow's sklearn flavor only"
        )
    if not isinstance(sklearn, dict):
        raise ArtifactError(f"{MLMODEL}: the sklearn flavor is not a mapping")
    file_name = sklearn.get("pickled_model")
    if not isinstance(file_name, str):
        raise ArtifactError(f"{MLMODEL}: the sklearn flavor names no pickled_model file")
    # Every YAML value is checked for its type before it is shown: an aliased structure can
    # print as gigabytes.
    fmt = sklearn.get("serialization_format", "cloudpickle")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        shown = repr(fmt[:40]) if isinstance(fmt, str) else f"a {type(fmt).__name__}"
        raise ArtifactError(
            f"{MLMODEL}: serialization_format {shown} is not one of {', '.join(FORMATS)}"
        )
    version = meta.get("mlflow_version")
    return MlflowModel(
        root=root,
        model_file=member(root, file_name, max_bytes),
        serialization_format=fmt,
        signature=read_signature(meta.get("signature")),
        run_id=_identifier(meta, "run_id"),
        model_id=_identifier(meta, "model_id") or _identifier(meta, "model_uuid"),
        mlflow_version=version[:64] if isinstance(version, str) and version else None,
    )


def member(root: Path, name: str, max_bytes: int) -> Path:
    """``root/name`` for a relative name inside ``root`` naming a regular file (no link on
    the way) of at most ``max_bytes``."""
    shown = name if len(name) <= 200 else name[:200] + "…"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (
        not posix.parts
        or "\x00" in name
        or "\\" in name
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
    ):
        raise ArtifactError(
            f"{MLMODEL} names {shown!r}: a file name must be relative, inside the model "
            "directory, without '..'"
        )
    path, info = root, root.lstat()
    for part in posix.parts:
        path = path / part
        try:
            info = path.lstat()
        except OSError:
            raise ArtifactError(f"{shown!r} named by {MLMODEL} is not in {root}") from None
        if stat.S_ISLNK(info.st_mode):
            raise ArtifactError(f"{shown!r} named by {MLMODEL} is a symbolic link; refused")
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{shown!r} named by {MLMODEL} is not a regular file")
    if info.st_size > max_bytes:
        raise ArtifactError(f"{shown!r} is {info.st_size} bytes (at most {max_bytes})")
    return path


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, opened without following a link and read no further than allowed
    (the directory is not ours: it may change after it was checked)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ArtifactError(f"{path.name} is not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ArtifactError(f"{path.name} is larger than {max_bytes} bytes")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(read_bounded(path, MAX_MLMODEL_BYTES))
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{MLMODEL} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{MLMODEL} is not a YAML mapping")
    return meta


def _identifier(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or RUN_ID.fullmatch(value) is None:
        shown = repr(value[:80]) if isinstance(value, str) else f"(a {type(value).__name__})"
        raise ArtifactError(f"{MLMODEL}: {key} {shown} is not an MLflow id")
    return value


def read_signature(raw: object) -> Signature | None:
    """MLflow's ``signature.inputs`` (a JSON string in MLmodel) as columns or a tensor."""
    if raw is None:
        return None
    inputs = raw.get("inputs") if isinstance(raw, dict) else None
    if inputs is None:
        return None
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else None
    except ValueError:
        specs = None
    if not isinstance(specs, list) or not specs or len(specs) > MAX_FEATURES:
        raise ArtifactError(f"{MLMODEL}: signature inputs are not a list of column specs")
    if not all(isinstance(s, dict) for s in specs):
        raise ArtifactError(f"{MLMODEL}: signature inputs are not a list of column specs")
    if any(s.get("type") == "tensor" for s in specs):
        spec = specs[0].get("tensor-spec")
        if len(specs) != 1 or not isinstance(spec, dict):
            raise ArtifactError(
                f"{MLMODEL}: a signature of {len(specs)} tensors; predictd takes one tensor "
                "or named columns"
            )
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise ArtifactError(f"{MLMODEL}: the signature's tensor has no integer shape")
        return Signature(tensor_dtype=str(spec.get("dtype")), tensor_shape=tuple(shape))
    columns = []
    for spec in specs:
        name, kind = spec.get("name"), spec.get("type")
        if not isinstance(kind, str) or not (name is None or isinstance(name, str)):
            raise ArtifactError(f"{MLMODEL}: signature column {str(spec)[:120]} is malformed")
        columns.append(Column(name, kind))
    return Signature(columns=tuple(columns))


def feature_names(signature: Signature | None, schema: Schema) -> tuple[str, ...] | None:
    """The feature names the version takes, from the signature where the model itself only
    counts its features; None to keep the model's own. ArtifactError where the signature
    and the model disagree, or the signature asks for inputs predictd cannot take."""
    if signature is None:
        return None
    if signature.tensor_shape is not None:
        _check_tensor(signature, schema)
        return None
    columns = signature.columns
    if schema.input_kind == "text":
        if len(columns) != 1 or columns[0].type != "string":
            raise ArtifactError(
                "the model reads text, so its signature must be one string column; it has "
                + ", ".join(f"{c.name or '?'}: {c.type}" for c in columns)
            )
        return None
    other = [f"{c.name or '?'} ({c.type})" for c in columns if c.type not in NUMERIC_COLUMNS]
    if other:
        raise ArtifactError(
            f"signature columns {', '.join(other[:10])} are not numeric: predictd's tabular "
            "models take numbers (double, float, long, integer or boolean)"
        )
    if len(columns) != len(schema.feature_names):
        raise ArtifactError(
            f"the signature has {len(columns)} columns; the model takes "
            f"{len(schema.feature_names)} features"
        )
    names = [c.name for c in columns]
    if any(n is None for n in names):
        return None  # unnamed columns: only the count says anything
    named = tuple(str(n) for n in names)
    if len(set(named)) != len(named) or not all(n and n.isprintable() for n in named):
        raise ArtifactError("the signature's column names must be unique and printable")
    if schema.positional:
        return named
    if set(named) != set(schema.feature_names):
        missing = sorted(set(schema.feature_names) - set(named))
        extra = sorted(set(named) - set(schema.feature_names))
        raise ArtifactError(
            f"the signature's columns do not match the features the model was fitted on "
            f"(missing {missing[:10]}, not in the model {extra[:10]})"
        )
    return None


def _check_tensor(signature: Signature, schema: Schema) -> None:
    shape, dtype = signature.tensor_shape or (), signature.tensor_dtype or ""
    if schema.input_kind == "text":
        if dtype not in TEXT_DTYPES or len(shape) != 1:
            raise ArtifactError(
                f"the model reads text; its signature is a {dtype} tensor of shape "
                f"{list(shape)}, not one string per row"
            )
        return
    if NUMERIC_DTYPES.fullmatch(dtype) is None or len(shape) != 2:
        raise ArtifactError(
            f"the signature is a {dtype} tensor of shape {list(shape)}; predictd takes a "
            "numeric [-1, n_features] tensor or named columns"
        )
    if shape[1] != -1 and shape[1] != len(schema.feature_names):
        raise ArtifactError(
            f"the signature's tensor has {shape[1]} columns; the model takes "
            f"{len(schema.feature_names)} features"
        )


__all__ = [
    "MLMODEL",
    "Column",
    "MlflowModel",
    "Signature",
    "feature_names",
    "read_bounded",
    "read_mlflow_model",
    "read_signature",
]
