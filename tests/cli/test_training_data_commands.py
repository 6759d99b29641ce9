"""`predictd models register --training-data/--validation`: the data a version was fitted and
validated on, stored content-addressed beside its artifact; an untrusted file that does not fit
the model is refused in one line and nothing is stored."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from benchmarks.retrain_recovery import FEATURES, Scenario, base_training_set, write_artifacts
from typer.testing import CliRunner

from predictd.cli import app
from predictd.registry.artifacts import ArtifactStore
from predictd.vocabulary import sha256_of
from tests.conftest import Artifacts

runner = CliRunner()
ROWS = 200
SCENARIO = Scenario(base_rows=ROWS)


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    """A tabular classifier (features x0..x3, classes 0/1) and its training data as CSV."""
    return write_artifacts(SCENARIO, tmp_path / "model")


def invoke(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    """``rows`` in the format ``path``'s suffix names."""
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def flat_rows(label: str = "label", seed: int = 0) -> list[dict[str, object]]:
    return [{**features, label: y} for features, y in base_training_set(Scenario(seed, ROWS))]


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return [p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_training_and_validation_data_are_stored_in_each_format(
    env: str, tmp_path: Path, model: tuple[Path, Path], suffix: str
) -> None:
    artifact, _ = model
    training = write_rows(tmp_path / f"train{suffix}", flat_rows("target"))
    validation = write_rows(tmp_path / f"valid{suffix}", flat_rows("target", seed=7)[:50])
    out, err = invoke(
        "models",
        "register",
        str(artifact),
        "--name",
        "m",
        "--training-data",
        str(training),
        "--validation",
        str(validation),
        "--label-column",
        "target",
    )
    assert "registered m v1 (none)" in out
    fmt = suffix.removeprefix(".")
    assert f"training data: {fmt}, {ROWS} rows, label 'target', sha256 " in err

    shown_out, shown_err = invoke("models", "show", "m", "1")
    shown = json.loads(shown_out)
    assert shown["training_samples"] == ROWS
    data = shown["training_data"]
    assert {k: data[k] for k in ("format", "rows", "label", "sha256")} == {
        "format": fmt,
        "rows": ROWS,
        "label": "target",
        "sha256": sha256_of(training),
    }
    assert shown["validation_data"]["rows"] == 50
    assert shown["validation_data"]["sha256"] == sha256_of(validation)
    # Stored content-addressed beside the artifact, byte for byte.
    stored = ArtifactStore.local_path(data["uri"])
    assert stored.name == f"{data['sha256']}{suffix}"
    assert stored.read_bytes() == training.read_bytes()
    # The validation rows still make the reference profile and calibrate the classifier.
    profile = shown["reference_profile"]
    assert profile["rows"] == 50
    assert sorted(profile["features"]) == list(FEATURES)
    assert len(profile["calibration"]) == 10
    assert f"validation data: {fmt}, 50 rows" in shown_err


def test_a_text_models_data_has_a_text_column(env: str, artifacts: Artifacts) -> None:
    trained = artifacts.sentiment
    assert trained.training_data is not None
    invoke(
        "models",
        "register",
        str(trained.path),
        "--name",
        "s",
        "--training-data",
        str(trained.training_data),
    )
    shown = json.loads(invoke("models", "show", "s", "1")[0])
    assert shown["training_data"]["rows"] == trained.training_samples
    assert shown["training_samples"] == trained.training_samples

    # The tabular model's data is not a text model's.
    tabular = artifacts.tabular.training_data
    assert tabular is not None
    _, err = invoke(
        "models",
        "register",
        str(trained.path),
        "--name",
        "s",
        "--training-data",
        str(tabular),
        code=1,
    )
    assert "--training-data line 1: missing column(s): text" in err


HEADER = ",".join((*FEATURES, "label"))
GOOD = "0.1,0.2,0.3,0.4,1"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("train.txt", f"{HEADER}\n{GOOD}\n", "use a .csv, .jsonl or .parquet file"),
        ("train.CSV", f"{HEADER}\n{GOOD}\n", "use a .csv, .jsonl or .parquet file"),
        ("train.csv", "x0,x1,x2,x3\n1,2,3,4\n", "line 1: the label column: label"),
        ("train.csv", "x0,x1,label\n1,2,0\n", "line 1: missing column(s): x2, x3"),
        ("train.csv", f"{HEADER}\n{GOOD}\n0.1,abc,0.3,0.4,0\n", "line 3: 'x1' is not a number"),
        ("train.csv", f"{HEADER}\n0.1,0.2,0.3,1\n", "line 2: 4 fields, the header has 5"),
        ("train.csv", f"{HEADER}\n0.1,inf,0.3,0.4,1\n", "line 2: 'x1' must be finite"),
        ("train.csv", f"{HEADER}\n0.1,0.2,0.3,0.4,7\n", "label '7' is not one of the model's"),
        ("train.csv", f"{HEADER}\n0.1,0.2,0.3,0.4,\n", "line 2: no label in 'label'"),
        ("train.csv", f"{HEADER}\n", "the file holds no rows"),
        ("train.csv", "", "the file is empty"),
        ("train.csv", b"x0,x1,x2,x3,label\n\xff\xfe,1,1,1,1\n", "not UTF-8 text"),
        (
            "train.jsonl",
            '{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "label": 1}\n{"x0": 1,\n',
            "line 2: not JSON",
        ),
        ("train.jsonl", "[1, 2, 3, 4, 1]\n", "line 1: expected a JSON object"),
        (
            "train.jsonl",
            '{"x0": "1", "x1": 2, "x2": 3, "x3": 4, "label": 1}\n',
            "line 1: 'x0' must be a number",
        ),
        (
            "train.jsonl",
            '{"x0": true, "x1": 2, "x2": 3, "x3": 4, "label": 1}\n',
            "line 1: 'x0' must be a number",
        ),
        (
            "train.jsonl",
            '{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "label": [1]}\n',
            "line 1: 'label' must be a string, number or boolean",
        ),
        (
            "train.jsonl",
            '{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "label": 1}\n' + "[" * 5000 + "\n",
            "line 2: not JSON",
        ),
        ("train.parquet", b"PAR1 this is not a parquet file PAR1", "not a readable Parquet file"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_and_nothing_is_stored(
    env: str,
    tmp_path: Path,
    model: tuple[Path, Path],
    name: str,
    content: str | bytes,
    message: str,
) -> None:
    artifact, _ = model
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    _, err = invoke(
        "models", "register", str(artifact), "--name", "m", "--training-data", str(path), code=1
    )
    assert err.startswith("error: --training-data"), err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert invoke("models", "list")[0].strip() == ""
    assert stored_files(tmp_path) == []


def test_parquet_without_a_feature_column_and_bad_validation_store_nothing(
    env: str, tmp_path: Path, model: tuple[Path, Path]
) -> None:
    artifact, training = model
    rows = [{k: v for k, v in row.items() if k != "x3"} for row in flat_rows()]
    parquet = write_rows(tmp_path / "no-x3.parquet", rows)
    _, err = invoke(
        "models", "register", str(artifact), "--name", "m", "--training-data", str(parquet), code=1
    )
    assert "--training-data schema: missing column(s): x3" in err
    # Good training data, bad validation data: neither is kept, nor the artifact.
    bad = write_rows(tmp_path / "valid.jsonl", [{"features": {"x0": 1.0}, "label": 1}])
    _, err = invoke(
        "models",
        "register",
        str(artifact),
        "--name",
        "m",
        "--training-data",
        str(training),
        "--validation",
        str(bad),
        code=1,
    )
    assert "--validation line 1: missing column(s): x1, x2, x3" in err
    assert invoke("models", "list")[0].strip() == ""
    assert stored_files(tmp_path) == []


def test_an_oversized_file_is_refused_before_it_is_read(
    env: str, tmp_path: Path, model: tuple[Path, Path]
) -> None:
    artifact, _ = model
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as f:  # sparse: 300 MiB on paper, a few bytes on disk
        f.write(f"{HEADER}\n{GOOD}\n".encode())
        f.truncate(300 << 20)
    _, err = invoke(
        "models", "register", str(artifact), "--name", "m", "--training-data", str(huge), code=1
    )
    assert f"{300 << 20} bytes is more than the {256 << 20} allowed" in err
    assert invoke("models", "list")[0].strip() == ""
    assert stored_files(tmp_path) == []
    assert os.path.getsize(huge) == 300 << 20
