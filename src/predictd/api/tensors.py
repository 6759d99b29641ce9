"""Open Inference Protocol tensors in and out: JSON data, the binary tensor extension, and the
mapping between tensors and predictd's items (text, or named features) and answers.

A text model takes one BYTES input of shape [N] or [N, 1]. A tabular model takes either one
numeric input of shape [N, F] whose columns follow the model's feature names, or one input per
feature, named for it, of shape [N] or [N, 1]. Answers come back as the outputs ``label``,
``confidence`` and ``probabilities`` (classifiers, columns in class order) and
``prediction_id`` (the id feedback refers to). Every refusal names the input, element or
output at fault.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from predictd.errors import InvalidInput
from predictd.inference.runtime import ModelMeta
from predictd.inference.values import ItemInput, PredictionResult
from predictd.schemas.v2 import Datatype, InferRequest, MetadataTensor, RequestInput

NUMERIC: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
_LENGTH = struct.Struct("<I")
OUTPUTS = ("label", "confidence", "probabilities", "prediction_id")


@dataclass(frozen=True, slots=True)
class Tensor:
    index: int  # position in the request's inputs, for error fields
    name: str
    shape: tuple[int, ...]
    datatype: str
    values: np.ndarray[Any, Any] | list[bytes]

    @property
    def field(self) -> str:
        return f"inputs[{self.index}]"


# --- request -------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data that follows it (binary extension)."""
    if header_length is None:
        return body, b""
    field = "inference-header-content-length"
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput("the header must be a byte count", field=field) from None
    if not 0 <= length <= len(body):
        raise InvalidInput(f"{length} is outside the body's {len(body)} bytes", field=field)
    return body[:length], body[length:]


def parse_request(header: bytes) -> InferRequest:
    if not header:
        raise InvalidInput("the inference request body is empty", field="body")
    try:
        data = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise InvalidInput("the inference request is not valid JSON", field="body") from None
    try:
        return InferRequest.model_validate(data)
    except ValidationError as exc:  # rendered like any body error: 422 naming the field
        raise RequestValidationError(exc.errors()) from None


def decode_inputs(request: InferRequest, binary: bytes) -> list[Tensor]:
    tensors: list[Tensor] = []
    offset = 0
    for index, given in enumerate(request.inputs):
        field = f"inputs[{index}]"
        if any(d < 0 for d in given.shape):
            raise InvalidInput("dimensions must not be negative", field=f"{field}.shape")
        count = math.prod(given.shape)
        size = (given.parameters or {}).get("binary_data_size")
        if size is None:
            values = _from_json(given, count, field)
        else:
            if given.data is not None:
                raise InvalidInput("send data or binary_data_size, not both", field=f"{field}.data")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidInput(
                    "must be a byte count", field=f"{field}.parameters.binary_data_size"
                )
            if offset + size > len(binary):
                raise InvalidInput(
                    "runs past the end of the binary data",
                    field=f"{field}.parameters.binary_data_size",
                )
            values = _from_binary(given.datatype, binary[offset : offset + size], count, field)
            offset += size
        tensors.append(Tensor(index, given.name, tuple(given.shape), given.datatype, values))
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data follow the last input", field="body"
        )
    return tensors


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _from_json(given: RequestInput, count: int, field: str) -> np.ndarray[Any, Any] | list[bytes]:
    if given.data is None:
        raise InvalidInput("data is required (or binary_data_size)", field=f"{field}.data")
    flat = _flatten(given.data)
    if len(flat) != count:
        raise InvalidInput(
            f"shape {given.shape} holds {count} elements but data has {len(flat)}",
            field=f"{field}.data",
        )
    if given.datatype == "BYTES":
        for k, item in enumerate(flat):
            if not isinstance(item, str):
                raise InvalidInput("BYTES elements are strings", field=f"{field}.data[{k}]")
        return [item.encode() for item in flat]
    wanted: tuple[type, ...] = (bool,) if given.datatype == "BOOL" else (int, float)
    for k, item in enumerate(flat):
        if type(item) not in wanted:
            kind = "true or false" if given.datatype == "BOOL" else "a number"
            raise InvalidInput(f"{given.datatype} elements are {kind}", field=f"{field}.data[{k}]")
    try:
        return np.asarray(flat, dtype=NUMERIC[given.datatype])
    except (OverflowError, ValueError):
        raise InvalidInput(
            f"a value does not fit {given.datatype}", field=f"{field}.data"
        ) from None


def _from_binary(
    datatype: str, chunk: bytes, count: int, field: str
) -> np.ndarray[Any, Any] | list[bytes]:
    if datatype != "BYTES":
        dtype = NUMERIC[datatype]
        if len(chunk) != count * dtype.itemsize:
            raise InvalidInput(
                f"{count} {datatype} elements take {count * dtype.itemsize} bytes, "
                f"not {len(chunk)}",
                field=f"{field}.parameters.binary_data_size",
            )
        return np.frombuffer(chunk, dtype=dtype)
    items: list[bytes] = []
    offset = 0
    while offset < len(chunk) and len(items) < count:
        if offset + 4 > len(chunk):
            break
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            break
        items.append(chunk[offset : offset + length])
        offset += length
    if len(items) != count or offset != len(chunk):
        raise InvalidInput(
            f"expected {count} BYTES elements, each a 4-byte little-endian length and its bytes",
            field=f"{field}.parameters.binary_data_size",
        )
    return items


# --- tensors to items ------------------------------------------------------------------------


Locate = Callable[[str | None], str | None]
_ITEM_FIELD = re.compile(r"^(?:items\[(\d+)\]\.)?(text|features)(?:\.(.+))?$")


def _rows(tensor: Tensor, field: str = "shape") -> int:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise InvalidInput(
        f"shape must be [N] or [N, 1], not {list(shape)}", field=f"{tensor.field}.{field}"
    )


def to_items(tensors: Sequence[Tensor], meta: ModelMeta) -> tuple[list[ItemInput], Locate]:
    """The request's rows as predictd items, and where in the request an item's field is."""
    if meta.input_kind == "text":
        return _text_items(tensors)
    return _feature_items(tensors, meta.feature_names)


def _text_items(tensors: Sequence[Tensor]) -> tuple[list[ItemInput], Locate]:
    if len(tensors) != 1:
        raise InvalidInput("this text model takes one BYTES input ('text')", field="inputs")
    tensor = tensors[0]
    if tensor.datatype != "BYTES":
        raise InvalidInput("this text model takes BYTES", field=f"{tensor.field}.datatype")
    _rows(tensor)
    texts: list[ItemInput] = []
    for k, raw in enumerate(tensor.values):
        try:
            texts.append(ItemInput(text=bytes(raw).decode()))
        except UnicodeDecodeError:
            raise InvalidInput("is not UTF-8 text", field=f"{tensor.field}.data[{k}]") from None

    def locate(field: str | None) -> str | None:
        match = _ITEM_FIELD.match(field or "")
        return f"{tensor.field}.data[{match[1] or 0}]" if match else field

    return texts, locate


def _numeric(tensor: Tensor) -> np.ndarray[Any, Any]:
    if tensor.datatype in ("BYTES", "BOOL") or not isinstance(tensor.values, np.ndarray):
        raise InvalidInput(
            "features are numbers: send FP32, FP64 or an integer type",
            field=f"{tensor.field}.datatype",
        )
    return tensor.values.astype(np.float64, copy=False)


def _feature_items(
    tensors: Sequence[Tensor], names: Sequence[str]
) -> tuple[list[ItemInput], Locate]:
    if len(tensors) == 1 and tensors[0].name not in names:
        tensor = tensors[0]
        shape = tensor.shape
        if len(shape) != 2 or shape[1] != len(names):
            raise InvalidInput(
                f"shape must be [N, {len(names)}] (one column per feature), not {list(shape)}",
                field=f"{tensor.field}.shape",
            )
        matrix = _numeric(tensor).reshape(shape).tolist()
        items = [ItemInput(features=dict(zip(names, row, strict=True))) for row in matrix]
        columns = {name: i for i, name in enumerate(names)}

        def locate_matrix(field: str | None) -> str | None:
            match = _ITEM_FIELD.match(field or "")
            if not match:
                return field
            column = columns.get(match[3] or "")
            suffix = f"[{column}]" if column is not None else ""
            return f"{tensor.field}.data[{match[1] or 0}]{suffix}"

        return items, locate_matrix
    by_name = {t.name: t for t in tensors}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InvalidInput(
            f"missing feature input(s): {', '.join(missing[:5])}; or send one [N, "
            f"{len(names)}] input",
            field="inputs",
        )
    extra = [t for t in tensors if t.name not in names]
    if extra or len(by_name) != len(tensors):
        bad = extra[0] if extra else tensors[-1]
        raise InvalidInput(f"unknown or repeated input {bad.name!r}", field=f"{bad.field}.name")
    rows = {_rows(t) for t in tensors}
    if len(rows) != 1:
        raise InvalidInput("every feature input must have the same number of rows", field="inputs")
    columns_by_name = {n: _numeric(by_name[n]).tolist() for n in names}
    count = rows.pop()
    items = [ItemInput(features={n: columns_by_name[n][r] for n in names}) for r in range(count)]

    def locate_named(field: str | None) -> str | None:
        match = _ITEM_FIELD.match(field or "")
        tensor = by_name.get(match[3] or "") if match else None
        return f"{tensor.field}.data[{match[1] or 0}]" if match and tensor else field

    return items, locate_named


# --- answers to outputs ------------------------------------------------------------------------


def label_datatype(meta: ModelMeta) -> Datatype:
    if meta.task == "regression":
        return "FP64"
    kinds = {type(c) for c in meta.classes}
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds and kinds <= {int, float}:
        return "FP64"
    return "BYTES"


def output_names(meta: ModelMeta) -> tuple[str, ...]:
    if meta.task == "classification":
        return OUTPUTS
    return ("label", "prediction_id")


def metadata_tensors(meta: ModelMeta) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
    if meta.input_kind == "text":
        inputs = [MetadataTensor(name="text", datatype="BYTES", shape=[-1])]
    else:
        inputs = [
            MetadataTensor(name="features", datatype="FP64", shape=[-1, len(meta.feature_names)])
        ]
    shapes: dict[str, tuple[Datatype, list[int]]] = {
        "label": (label_datatype(meta), [-1]),
        "confidence": ("FP64", [-1]),
        "probabilities": ("FP64", [-1, len(meta.classes)]),
        "prediction_id": ("BYTES", [-1]),
    }
    outputs = [
        MetadataTensor(name=n, datatype=shapes[n][0], shape=shapes[n][1])
        for n in output_names(meta)
    ]
    return inputs, outputs


def _flag(parameters: dict[str, Any] | None, name: str, default: bool, field: str) -> bool:
    value = (parameters or {}).get(name, default)
    if not isinstance(value, bool):
        where = f"{field}.parameters.{name}" if field else f"parameters.{name}"
        raise InvalidInput("must be true or false", field=where)
    return value


@dataclass(frozen=True, slots=True)
class Wanted:
    name: str
    binary: bool


def wanted_outputs(request: InferRequest, meta: ModelMeta) -> list[Wanted]:
    """The outputs to send and which go as binary; checked before the model runs."""
    binary_default = _flag(request.parameters, "binary_data_output", False, "")
    available = output_names(meta)
    if request.outputs is None:
        return [Wanted(name, binary_default) for name in available]
    wanted: list[Wanted] = []
    for k, out in enumerate(request.outputs):
        field = f"outputs[{k}]"
        if out.name not in available:
            raise InvalidInput(
                f"this model has no output {out.name!r} (outputs: {', '.join(available)})",
                field=f"{field}.name",
            )
        if "classification" in (out.parameters or {}):
            raise InvalidInput(
                "the classification extension is not supported; read the 'label' output",
                field=f"{field}.parameters.classification",
            )
        wanted.append(Wanted(out.name, _flag(out.parameters, "binary_data", binary_default, field)))
    return wanted


def _column(
    name: str, results: Sequence[PredictionResult], meta: ModelMeta
) -> tuple[str, list[int], list[Any]]:
    count = len(results)
    if name == "label":
        datatype = label_datatype(meta)
        labels = [r.prediction for r in results]
        return datatype, [count], [str(v) for v in labels] if datatype == "BYTES" else labels
    if name == "confidence":
        return "FP64", [count], [_number(r.confidence) for r in results]
    if name == "probabilities":
        keys = [str(c) for c in meta.classes]
        flat = [_number((r.probabilities or {}).get(k)) for r in results for k in keys]
        return "FP64", [count, len(keys)], flat
    return "BYTES", [count], [str(r.prediction_id) for r in results]


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def encode_outputs(
    results: Sequence[PredictionResult], meta: ModelMeta, wanted: Sequence[Wanted]
) -> tuple[list[dict[str, Any]], bytes]:
    """The response's outputs and the binary data that follows the JSON header (if any)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for want in wanted:
        datatype, shape, data = _column(want.name, results, meta)
        out: dict[str, Any] = {"name": want.name, "datatype": datatype, "shape": shape}
        if want.binary:
            raw = _to_binary(datatype, data)
            chunks.append(raw)
            out["parameters"] = {"binary_data_size": len(raw)}
        else:
            out["data"] = [None if isinstance(v, float) and math.isnan(v) else v for v in data]
        outputs.append(out)
    return outputs, b"".join(chunks)


def _to_binary(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        encoded = [str(v).encode() for v in data]
        return b"".join(_LENGTH.pack(len(e)) + e for e in encoded)
    return np.asarray(data, dtype=NUMERIC[datatype]).tobytes()
