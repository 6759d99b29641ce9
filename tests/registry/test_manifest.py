"""The load manifest: several servers sharing an artifact directory update it at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from predictd.registry.manifest import LoadManifest
from predictd.registry.models import ModelVersion

BASE = ModelVersion(
    name="m",
    version=1,
    flavor="sklearn",
    task="classification",
    input_kind="text",
    artifact_uri="file:///nowhere.skops",
    artifact_sha256="0" * 64,
    stage="production",
    created_at=datetime.now(UTC),
)


def test_concurrent_writers_lose_no_entry_and_never_leave_a_torn_file(tmp_path: Path) -> None:
    def writer(name: str) -> int:
        manifest = LoadManifest(tmp_path)  # each "server" has its own handle
        torn = 0
        for version in range(1, 151):
            manifest.write(replace(BASE, name=name, version=version), default=name == "a")
            if manifest.read(name) is None:
                torn += 1
        return torn

    with ThreadPoolExecutor(4) as pool:
        torn = list(pool.map(writer, ["a", "b", "c", "d"]))

    assert torn == [0, 0, 0, 0]
    versions, default = LoadManifest(tmp_path).read_all()
    assert {(v.name, v.version) for v in versions} == {(n, 150) for n in "abcd"}
    assert default == "a"
    assert not list(tmp_path.glob("*.tmp"))
