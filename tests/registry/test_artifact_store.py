"""The content-addressed artifact store: the local directory, and an fsspec URL (memory:// and
file://) with its verified download cache."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pytest

from predictd.errors import ArtifactError
from predictd.inference.formats import inspect_artifact, runtime_for
from predictd.inference.runtime import ModelMeta
from predictd.registry.artifacts import ArtifactStore
from predictd.settings import Settings
from predictd.vocabulary import sha256_of
from tests.conftest import Artifacts


@pytest.fixture
def remote() -> Iterator[str]:
    """A fresh prefix in fsspec's in-process memory filesystem."""
    url = f"memory://predictd-test-{uuid.uuid4().hex}/models"
    yield url
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.skops"
    path.parent.mkdir()
    path.write_bytes(b"model bytes " * 1000)
    return path


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def remote_write(url: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, data)


def test_local_store_is_a_verified_directory(tmp_path: Path, source: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    uri, sha = store.put(source)
    assert sha == sha256_of(source)
    path = store.verified_path(uri, sha)
    assert uri == path.resolve().as_uri()
    assert path == (tmp_path / "store" / sha[:2] / f"{sha}.skops").resolve()
    assert store.put(source) == (uri, sha)
    path.write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="sha256"):
        store.verified_path(uri, sha)


def test_a_store_under_a_path_that_needs_escaping(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "model store+1 %20 é"
    store = ArtifactStore(root)
    uri, sha = store.put(source)
    assert "%20" in uri  # the URI is percent-encoded, the path it names is not
    path = store.verified_path(uri, sha)
    assert path == (root / sha[:2] / f"{sha}.skops").resolve()
    assert path.read_bytes() == source.read_bytes()


def test_remote_round_trip_through_the_cache(tmp_path: Path, source: Path, remote: str) -> None:
    settings = Settings(artifact_dir=tmp_path / "local", artifact_url=f"{remote}/").inference
    store = ArtifactStore.from_settings(settings)
    uri, sha = store.put(source)
    assert (uri, sha) == (f"{remote}/{sha[:2]}/{sha}.skops", sha256_of(source))
    with fsspec.open(uri, "rb") as f:
        assert f.read() == source.read_bytes()
    assert store.put(source) == (uri, sha)  # idempotent
    fs, prefix = fsspec.core.url_to_fs(remote)
    assert [p.rsplit("/", 1)[-1] for p in fs.find(prefix)] == [f"{sha}.skops"]  # no temp left

    path = store.verified_path(uri, sha)
    assert path == tmp_path / "local" / "cache" / sha[:2] / f"{sha}.skops"
    assert path.read_bytes() == source.read_bytes()
    assert files_under(tmp_path / "local") == [path]
    assert store.verified_path(uri, sha) == path  # served from the cache


def test_file_url_is_stored_and_verified_in_place(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "bucket"
    store = ArtifactStore(tmp_path / "local", target.as_uri())
    uri, sha = store.put(source)
    assert uri == (target / sha[:2] / f"{sha}.skops").as_uri()
    assert files_under(target) == [target / sha[:2] / f"{sha}.skops"]
    assert store.verified_path(uri, sha) == target / sha[:2] / f"{sha}.skops"
    assert not (tmp_path / "local").exists()  # nothing cached for a local target


def test_a_changed_remote_copy_is_refused(tmp_path: Path, source: Path, remote: str) -> None:
    uri, sha = ArtifactStore(tmp_path / "a", remote).put(source)
    remote_write(uri, b"tampered")
    reader = ArtifactStore(tmp_path / "b", remote)
    with pytest.raises(ArtifactError, match="registry expects"):
        reader.verified_path(uri, sha)
    assert files_under(tmp_path / "b") == []  # nothing unverified is kept


def test_a_changed_cached_copy_is_fetched_again(tmp_path: Path, source: Path, remote: str) -> None:
    store = ArtifactStore(tmp_path / "local", remote)
    uri, sha = store.put(source)
    cached = store.verified_path(uri, sha)
    cached.write_bytes(b"bit rot")
    assert store.verified_path(uri, sha) == cached
    assert cached.read_bytes() == source.read_bytes()

    # Both copies bad: one download, then a refusal; the bad cached copy is gone.
    cached.write_bytes(b"bit rot")
    remote_write(uri, b"tampered")
    with pytest.raises(ArtifactError, match="registry expects"):
        store.verified_path(uri, sha)
    assert files_under(tmp_path / "local") == []


def test_a_missing_remote_artifact_is_an_artifact_error(tmp_path: Path, remote: str) -> None:
    sha = "ab" * 32
    with pytest.raises(ArtifactError, match="artifact missing"):
        ArtifactStore(tmp_path, remote).verified_path(f"{remote}/ab/{sha}.onnx", sha)
    assert files_under(tmp_path) == []


def test_unknown_protocol_is_an_artifact_error(tmp_path: Path, source: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot open artifact location"):
        ArtifactStore(tmp_path, "nosuchprotocol://bucket").put(source)


def test_missing_fsspec_says_what_to_install(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # what a failed import leaves
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(ArtifactError, match=r"pip install 'predictd\[fsspec\]'"):
        ArtifactStore(tmp_path, "s3://bucket/models").put(source)


def test_a_model_served_from_a_remote_store(
    tmp_path: Path, remote: str, artifacts: Artifacts
) -> None:
    settings = Settings(artifact_dir=tmp_path / "local", artifact_url=remote).inference
    flavor, schema = inspect_artifact(artifacts.sentiment.path, settings)
    uri, sha = ArtifactStore.from_settings(settings).put(artifacts.sentiment.path)
    meta = ModelMeta(
        name="sentiment", version=1, flavor=flavor, sha256=sha, input_kind=schema.input_kind,
        task=schema.task, classes=schema.classes, loaded_at=datetime.now(UTC),
    )  # fmt: skip
    # Another host: same URL, empty cache.
    other = Settings(artifact_dir=tmp_path / "other", artifact_url=remote).inference
    path = ArtifactStore.from_settings(other).verified_path(uri, sha)
    runtime = runtime_for(flavor, path, meta, other)
    runtime.prepare()
    [prediction] = runtime.predict(["I love this product"])
    assert prediction.label == "positive"
