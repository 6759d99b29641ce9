"""Training and validation data kept with a version: read from untrusted files (CSV, JSON
lines, Parquet; the format by suffix) within size and row limits, checked against the
version's schema, and refused whole, naming the line and column, rather than partly kept.

A dataset holds a label column (``label`` unless named otherwise) and the model's inputs: a
``text`` column for a text model, one column per feature name for a tabular one (other
columns are ignored). A JSON line may also carry its features nested, ``{"features": {...},
"label": ...}``, the layout ``models register --validation`` always took. Stored
content-addressed beside the artifact, the file is referenced as ``{"uri", "sha256",
"format", "rows", "label"}`` and read back through ``ArtifactStore.verified_path``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from predictd.errors import InvalidInput
from predictd.inference.runtime import InputKind, Label, ModelInput, Task
from predictd.inference.values import ItemInput
from predictd.vocabulary import comparable_label

FORMATS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
MAX_BYTES = 256 << 20  # a file larger than this is refused before it is read
MAX_ROWS = 1_000_000
MAX_CELL_CHARS = 100_000  # one CSV field or text value
MAX_LINE_BYTES = 1 << 20  # one JSON line
# A Parquet file's wanted columns, decoded: the same bound as a CSV file's bytes. Counted on
# the decoded batches, since a dictionary-encoded column's pages say little of what it holds
# (720 bytes of Parquet can decode to hundreds of MB of text).
MAX_INFLATED_BYTES = MAX_BYTES
PARQUET_BATCH_ROWS = 256
MAX_LABEL_COLUMN = 200
PARQUET_HINT = "pip install 'predictd[parquet]'"


@dataclass(frozen=True)
class DatasetFile:
    """A file a user hands in, and the name its refusals go by (``--training-data``)."""

    path: Path
    label: str = "label"
    name: str = "training data"


@dataclass(frozen=True)
class DatasetSpec:
    """What a version's data must hold: its inputs, and labels of its kind."""

    input_kind: InputKind
    task: Task
    feature_names: tuple[str, ...] = ()
    classes: tuple[Label, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """Rows in file order: ``x`` is a float matrix (rows x feature_names) for a tabular
    model, a list of texts for a text model."""

    kind: InputKind
    feature_names: tuple[str, ...]
    x: Any  # np.ndarray | list[str]
    y: list[Label]
    format: str = "jsonl"

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self) -> list[ModelInput]:
        if self.kind == "text":
            return list(self.x)
        return [dict(zip(self.feature_names, map(float, row), strict=True)) for row in self.x]

    def examples(self) -> list[tuple[ItemInput, Label]]:
        """The rows as the validation profiler takes them."""
        if self.kind == "text":
            return [(ItemInput(text=t), y) for t, y in zip(self.x, self.y, strict=True)]
        return [
            (ItemInput(features=item), y)
            for item, y in zip(self.inputs(), self.y, strict=True)
            if isinstance(item, Mapping)
        ]


def dataset_format(source: DatasetFile) -> str:
    fmt = FORMATS.get(source.path.suffix)
    if fmt is None:
        raise InvalidInput(
            f"{source.name} {source.path.name!r}: use a .csv, .jsonl or .parquet file",
            field=source.name,
        )
    return fmt


def read_dataset(
    source: DatasetFile,
    spec: DatasetSpec,
    *,
    fmt: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_rows: int = MAX_ROWS,
    max_inflated_bytes: int = MAX_INFLATED_BYTES,
) -> Dataset:
    """Parse and check ``source``; InvalidInput naming the line and column otherwise.
    ``fmt``: the format already known (a stored file's name is its sha256)."""
    fmt = fmt or dataset_format(source)
    label = source.label
    if not label or len(label) > MAX_LABEL_COLUMN or not label.isprintable():
        raise InvalidInput(
            f"{source.name}: the label column must be a printable name of at "
            f"most {MAX_LABEL_COLUMN} characters",
            field="label_column",
        )
    if label in spec.feature_names or (spec.input_kind == "text" and label == "text"):
        raise InvalidInput(
            f"{source.name}: the label column {label!r} is also an input", field="label_column"
        )
    try:
        size = source.path.stat().st_size
    except OSError as exc:
        raise InvalidInput(
            f"{source.name}: cannot read {source.path}: {exc.strerror}", field=source.name
        ) from None
    if not source.path.is_file():
        raise InvalidInput(f"{source.name}: {source.path} is not a file", field=source.name)
    if size > max_bytes:
        raise InvalidInput(
            f"{source.name}: {size} bytes is more than the {max_bytes} allowed", field=source.name
        )
    reader = _Rows(source, spec, max_rows, max_inflated_bytes)
    try:
        if fmt == "csv":
            reader.read_csv()
        elif fmt == "jsonl":
            reader.read_jsonl()
        elif fmt == "parquet":
            reader.read_parquet()
        else:
            raise InvalidInput(f"{source.name}: unknown format {fmt!r}", field=source.name)
    except OSError as exc:
        raise InvalidInput(
            f"{source.name}: cannot read {source.path}: {exc}", field=source.name
        ) from None
    return reader.dataset(fmt)


class _Rows:
    """Collects checked rows; every refusal names where it was found."""

    def __init__(
        self, source: DatasetFile, spec: DatasetSpec, max_rows: int, max_inflated: int
    ) -> None:
        self.source, self.spec, self.max_rows = source, spec, max_rows
        self.max_inflated = max_inflated
        self.texts: list[str] = []
        self.numbers: list[list[float]] = []
        self.labels: list[Label] = []
        self._classes = {comparable_label(c): c for c in spec.classes}

    def refuse(self, where: str, why: str) -> InvalidInput:
        place = f"{self.source.name} {where}" if where else self.source.name
        return InvalidInput(f"{place}: {why}", field=self.source.name)

    def dataset(self, fmt: str) -> Dataset:
        if not self.labels:
            raise self.refuse("", "the file holds no rows")
        if self.spec.input_kind == "text":
            x: Any = self.texts
        else:
            x = np.asarray(self.numbers, dtype=np.float64).reshape(
                len(self.labels), len(self.spec.feature_names)
            )
        return Dataset(self.spec.input_kind, self.spec.feature_names, x, self.labels, fmt)

    def columns_needed(self) -> list[str]:
        inputs = ["text"] if self.spec.input_kind == "text" else list(self.spec.feature_names)
        return [*inputs, self.source.label]

    def check_columns(self, present: Sequence[str], where: str) -> None:
        missing = [c for c in self.columns_needed() if c not in present]
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            )
            kind = "the label column" if missing == [self.source.label] else "missing column(s)"
            raise self.refuse(where, f"{kind}: {shown}")

    def add(self, row: Mapping[str, Any], where: str, *, from_text: bool) -> None:
        if len(self.labels) >= self.max_rows:
            raise InvalidInput(
                f"{self.source.name}: more than {self.max_rows} rows", field=self.source.name
            )
        if self.spec.input_kind == "text":
            self.texts.append(self._text(row.get("text"), where))
        else:
            self.numbers.append(
                [self._number(row.get(n), n, where, from_text) for n in self.spec.feature_names]
            )
        self.labels.append(self._label(row.get(self.source.label), where))

    def _text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.refuse(where, "'text' must be a non-empty string")
        if len(value) > MAX_CELL_CHARS:
            raise self.refuse(where, f"'text' is longer than {MAX_CELL_CHARS} characters")
        return value

    def _number(self, value: Any, name: str, where: str, from_text: bool) -> float:
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.refuse(where, f"{name!r} is not a number ({value[:40]!r})") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.refuse(where, f"{name!r} must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise self.refuse(where, f"{name!r} must be finite")
        return number

    def _label(self, value: Any, where: str) -> Label:
        column = self.source.label
        if value is None or (isinstance(value, str) and not value):
            raise self.refuse(where, f"no label in {column!r}")
        if not isinstance(value, str | int | float | bool):
            raise self.refuse(where, f"{column!r} must be a string, number or boolean")
        if self.spec.task == "classification":
            found = self._classes.get(comparable_label(value))
            if found is None:
                known = ", ".join(map(comparable_label, self.spec.classes[:10]))
                raise self.refuse(
                    where,
                    f"label {comparable_label(value)[:40]!r} is not one "
                    f"of the model's classes ({known})",
                )
            return found
        try:
            number = float(value)
        except ValueError:
            raise self.refuse(where, f"{column!r} must be a number for a regressor") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise self.refuse(where, f"{column!r} must be a finite number for a regressor")
        return number

    # -- formats ----------------------------------------------------------------------------

    def read_csv(self) -> None:
        with self.source.path.open("r", encoding="utf-8", errors="strict", newline="") as f:
            try:
                self._csv_rows(csv.reader(f, strict=True))
            except UnicodeDecodeError:
                raise self.refuse("", "not UTF-8 text") from None

    def _csv_rows(self, rows: Any) -> None:
        try:
            header = next(rows, None)
            if header is None:
                raise self.refuse("", "the file is empty")
            if len(set(header)) != len(header):
                raise self.refuse("line 1", "a column name appears twice")
            self.check_columns(header, "line 1")
            for cells in rows:
                where = f"line {rows.line_num}"
                if not cells:
                    continue  # a blank line
                if len(cells) != len(header):
                    raise self.refuse(where, f"{len(cells)} fields, the header has {len(header)}")
                if any(len(cell) > MAX_CELL_CHARS for cell in cells):
                    raise self.refuse(where, f"a field longer than {MAX_CELL_CHARS} characters")
                self.add(dict(zip(header, cells, strict=True)), where, from_text=True)
        except csv.Error as exc:
            raise self.refuse(f"line {rows.line_num}", f"not CSV ({exc})") from None

    def read_jsonl(self) -> None:
        with self.source.path.open("rb") as f:
            for number, line in enumerate(_lines(f), start=1):
                where = f"line {number}"
                if line is None:
                    raise self.refuse(where, f"longer than {MAX_LINE_BYTES} bytes")
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise self.refuse(where, f"not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise self.refuse(where, "expected a JSON object")
                nested = row.get("features")
                if self.spec.input_kind == "tabular" and isinstance(nested, dict):
                    row = {**nested, self.source.label: row.get(self.source.label)}
                self.check_columns(list(row), where)
                self.add(row, where, from_text=False)

    def read_parquet(self) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidInput(
                f"{self.source.name}: reading Parquet needs pyarrow: {PARQUET_HINT}",
                field=self.source.name,
            ) from None
        try:
            parquet = pq.ParquetFile(self.source.path)
            meta = parquet.metadata
            names = list(parquet.schema_arrow.names)
            self.check_columns(names, "schema")
            if meta.num_rows > self.max_rows:
                raise InvalidInput(
                    f"{self.source.name}: more than {self.max_rows} rows", field=self.source.name
                )
            wanted = self.columns_needed()
            inflated = sum(
                meta.row_group(g).column(c).total_uncompressed_size
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
                if meta.row_group(g).column(c).path_in_schema in wanted
            )
            if inflated > self.max_inflated:
                raise InvalidInput(
                    f"{self.source.name}: the columns read would take "
                    f"{inflated} bytes uncompressed, more than "
                    f"{self.max_inflated}",
                    field=self.source.name,
                )
            decoded, index = 0, 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
                arrays = {
                    name: (
                        column.dictionary_decode()
                        if pa.types.is_dictionary(column.type)
                        else column
                    )
                    for name, column in zip(batch.schema.names, batch.columns, strict=True)
                }
                decoded += sum(array.nbytes for array in arrays.values())
                if decoded > self.max_inflated:
                    raise InvalidInput(
                        f"{self.source.name}: the columns read decode to more than "
                        f"{self.max_inflated} bytes",
                        field=self.source.name,
                    )
                columns = {name: arrays[name].to_pylist() for name in wanted}
                for row in range(batch.num_rows):
                    index += 1
                    self.add(
                        {n: values[row] for n, values in columns.items()},
                        f"row {index}",
                        from_text=False,
                    )
        except (pa.ArrowException, ValueError) as exc:
            raise self.refuse("", f"not a readable Parquet file ({str(exc)[:200]})") from None


def _lines(f: io.BufferedReader) -> Iterator[bytes | None]:
    """The file's lines; None for one longer than MAX_LINE_BYTES (and reading stops there)."""
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            yield None
            return
        yield line


def write_jsonl(dataset: Dataset, label: str, path: Path) -> None:
    """``dataset`` as JSON lines of flat columns, the layout ``read_dataset`` reads back."""
    with path.open("wb") as f:
        for item, y in zip(dataset.inputs(), dataset.y, strict=True):
            row: dict[str, Any] = {"text": item} if isinstance(item, str) else dict(item)
            row[label] = y
            f.write(orjson.dumps(row) + b"\n")
