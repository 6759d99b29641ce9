"""`predictd demo` registers the demo model once and reuses it afterwards."""

from __future__ import annotations

from pathlib import Path

from predictd.cli.demo import prepare_demo
from predictd.db.engine import Database
from predictd.registry.service import ModelRegistry
from tests.support.app import make_settings


async def test_demo_registers_then_reuses(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    db = Database(settings.database)
    try:
        registry = ModelRegistry(settings.inference, db)
        assert await prepare_demo(registry) == "sentiment"
        assert await prepare_demo(registry) == "sentiment"
        assert await prepare_demo(registry, kind="tabular") == "breast_cancer"
        versions = await registry.list_versions()
    finally:
        await db.dispose()
    assert [(v.name, v.version, v.stage) for v in versions] == [
        ("breast_cancer", 1, "production"),
        ("sentiment", 1, "production"),
    ]
    tabular = versions[0]
    assert len(tabular.feature_names) == 30
    assert tabular.metrics["accuracy"] > 0.9
    # Both carry a reference profile from their held-out split, under the served names.
    profile = tabular.reference_profile or {}
    assert set(profile["features"]) == set(tabular.feature_names)
    assert profile["rows"] == sum(profile["features"]["mean_radius"]["counts"]) > 100
    text = versions[1].reference_profile or {}
    assert text["text_length"]["count"] == text["rows"] > 50
    assert len(text["calibration"]) == 10
