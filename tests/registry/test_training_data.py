"""A version's training and validation data in the registry: read within limits, kept
content-addressed, read back only after its sha256 is verified, and returned over HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from benchmarks.retrain_recovery import FEATURES, Scenario, base_training_set, write_artifacts

from predictd.cli.demo import prepare_demo
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.errors import ArtifactTampered, InvalidInput
from predictd.registry.artifacts import ArtifactStore
from predictd.registry.datasets import DatasetFile, DatasetSpec, read_dataset
from predictd.registry.service import ModelRegistry
from tests.support.app import make_settings, running_app

TABULAR = DatasetSpec("tabular", "classification", FEATURES, (0, 1))
ROWS = 60


@pytest.fixture
async def registry(tmp_path: Path, db_url: str) -> AsyncIterator[ModelRegistry]:
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    await migrate.upgrade(db)
    try:
        yield ModelRegistry(settings.inference, db)
    finally:
        await db.dispose()


def csv_text(rows: int = ROWS) -> str:
    lines = [",".join((*FEATURES, "label"))]
    for features, y in base_training_set(Scenario(base_rows=rows)):
        lines.append(",".join([*(str(features[n]) for n in FEATURES), str(y)]))
    return "\n".join(lines) + "\n"


def test_the_three_formats_read_the_same_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**f, "label": y} for f, y in base_training_set(Scenario(base_rows=ROWS))]
    (tmp_path / "d.csv").write_text(csv_text())
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    read = [
        read_dataset(DatasetFile(tmp_path / f"d.{s}"), TABULAR) for s in ("csv", "jsonl", "parquet")
    ]
    assert [d.format for d in read] == ["csv", "jsonl", "parquet"]
    for data in read:
        assert len(data) == ROWS
        assert data.y == [r["label"] for r in rows]
        assert all(type(y) is int for y in data.y)  # the model's class, not the CSV's "1"
        np.testing.assert_allclose(data.x, [[r[n] for n in FEATURES] for r in rows])


def test_nested_features_labels_of_a_regressor_and_the_row_limit(tmp_path: Path) -> None:
    nested = tmp_path / "nested.jsonl"
    nested.write_text(
        '{"features": {"x0": 1, "x1": 2, "x2": 3, "x3": 4, "extra": 9}, "label": 1}\n'
        "\n"
        '{"x0": 5, "x1": 6, "x2": 7, "x3": 8, "label": "0"}\n'
    )
    data = read_dataset(DatasetFile(nested), TABULAR)
    assert data.x.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert data.y == [1, 0]

    regressor = DatasetSpec("tabular", "regression", FEATURES)
    (tmp_path / "r.csv").write_text("x0,x1,x2,x3,label\n1,2,3,4,2.5\n")
    assert read_dataset(DatasetFile(tmp_path / "r.csv"), regressor).y == [2.5]
    (tmp_path / "bad.csv").write_text("x0,x1,x2,x3,label\n1,2,3,4,high\n")
    with pytest.raises(InvalidInput, match="line 2: 'label' must be a number for a regressor"):
        read_dataset(DatasetFile(tmp_path / "bad.csv"), regressor)

    (tmp_path / "many.csv").write_text(csv_text(10))
    with pytest.raises(InvalidInput, match="more than 5 rows"):
        read_dataset(DatasetFile(tmp_path / "many.csv"), TABULAR, max_rows=5)
    with pytest.raises(InvalidInput, match="more than the 100 allowed"):
        read_dataset(DatasetFile(tmp_path / "many.csv"), TABULAR, max_bytes=100)
    with pytest.raises(InvalidInput, match="the label column 'x0' is also an input"):
        read_dataset(DatasetFile(tmp_path / "many.csv", label="x0"), TABULAR)


def test_parquet_row_count_is_checked_before_the_rows_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**f, "label": y} for f, y in base_training_set(Scenario(base_rows=20))]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    with pytest.raises(InvalidInput, match="more than 10 rows"):
        read_dataset(DatasetFile(tmp_path / "d.parquet"), TABULAR, max_rows=10)
    nulls = [{**rows[0], "x2": None}]
    pq.write_table(pa.Table.from_pylist(nulls), tmp_path / "n.parquet")
    with pytest.raises(InvalidInput, match="row 1: 'x2' must be a number"):
        read_dataset(DatasetFile(tmp_path / "n.parquet"), TABULAR)


async def test_stored_data_is_read_back_only_while_its_sha256_matches(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    artifact, data = write_artifacts(Scenario(base_rows=ROWS), tmp_path / "m")
    candidate = await asyncio.to_thread(
        registry.inspect, artifact, "m", training_data=DatasetFile(data)
    )
    version = await registry.register(candidate)
    assert version.training_data is not None
    assert version.training_samples == ROWS
    back = await asyncio.to_thread(registry.read_dataset, version.training_data, version)
    assert len(back) == ROWS

    stored = ArtifactStore.local_path(version.training_data["uri"])
    stored.write_text(csv_text().replace(",1\n", ",0\n", 1))  # one label flipped
    with pytest.raises(ArtifactTampered, match="its bytes changed after registration"):
        registry.read_dataset(version.training_data, version)


async def test_the_demo_models_register_their_data(registry: ModelRegistry) -> None:
    for kind in ("sentiment", "tabular"):
        name = await prepare_demo(registry, kind=kind)
        version = await registry.production(name)
        assert version is not None
        assert version.training_data is not None
        assert version.validation_data is not None
        assert version.training_data["rows"] == version.training_samples
        assert version.training_data["format"] == "csv"
        assert version.validation_data["rows"] == version.reference_profile["rows"]
        assert (
            len(await asyncio.to_thread(registry.read_dataset, version.training_data, version))
            == version.training_samples
        )


async def test_the_version_route_returns_the_data_but_not_where_it_lies(
    tmp_path: Path, db_url: str
) -> None:
    artifact, data = write_artifacts(Scenario(base_rows=ROWS), tmp_path / "m")
    settings = make_settings(tmp_path, db_url, model_path=artifact, model_name="m")
    async with running_app(settings) as (app, client):
        registry: ModelRegistry = app.state.services.registry
        candidate = await asyncio.to_thread(
            registry.inspect,
            artifact,
            "m",
            training_data=DatasetFile(data),
            training_run={"parent_version": 1, "rows": {"base": 3}},
        )
        version = await registry.register(candidate, stage="staging", reuse=False)
        assert version.training_data is not None
        sha = version.training_data["sha256"]
        body = (await client.get(f"/models/m/versions/{version.version}")).json()
        assert body["training_data"] == {
            "format": "csv",
            "rows": ROWS,
            "label": "label",
            "sha256": sha,
        }
        assert body["validation_data"] is None
        assert body["training_run"] == {"parent_version": 1, "rows": {"base": 3}}
        assert "uri" not in json.dumps(body)


def test_parquet_without_pyarrow_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    for module in ("pyarrow", "pyarrow.parquet"):  # as on an install without the extra
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InvalidInput, match=r"needs pyarrow: pip install 'predictd\[parquet\]'"):
        read_dataset(DatasetFile(path), TABULAR)


def test_a_small_parquet_file_that_decodes_to_gigabytes_is_refused(tmp_path: Path) -> None:
    """Dictionary encoding stores a long text once: 3,000 rows of 95,000 characters make a
    file of a few KB whose pages claim little, yet decode to 285 MB. The decoded batches are
    counted, and reading stops at the bound (here 64 MB) instead of filling memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = "positive " * 10_555
    indices = pa.array([0] * 3000, pa.int32())
    table = pa.table(
        {"text": pa.DictionaryArray.from_arrays(indices, pa.array([text])),
         "label": pa.DictionaryArray.from_arrays(indices, pa.array(["positive"]))}
    )  # fmt: skip
    pq.write_table(table, tmp_path / "b.parquet")
    assert (tmp_path / "b.parquet").stat().st_size < 100_000
    spec = DatasetSpec("text", "classification", (), ("negative", "positive"))
    limit = 64 << 20
    with pytest.raises(InvalidInput, match=f"decode to more than {limit} bytes"):
        read_dataset(DatasetFile(tmp_path / "b.parquet"), spec, max_inflated_bytes=limit)
