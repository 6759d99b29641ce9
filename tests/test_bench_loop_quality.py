"""Part G's benchmark (benchmarks/loop_quality.py) stays runnable: its --quick mode runs end to
end and writes its section of RESULTS.md in place, and the in-memory reads it judges windows
with give what the real DriftService and PerformanceService give on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmarks import loop_quality
from benchmarks.report import split_sections

from predictd.settings import Settings
from tests.conftest import Artifacts

OTHER_PARTS = "<!-- results:header -->\n# results\n\n<!-- results:drift -->\n## E\n\n"
TARGETS = "<!-- results:targets -->\n## Targets\n"


def test_quick_run_writes_its_section_and_figures(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(OTHER_PARTS + TARGETS)
    out = tmp_path / "loop.json"
    argv = ["--quick", "--no-postgres", "--json", str(out), "--results", str(results)]

    assert loop_quality.main(argv) == 0
    sections = split_sections(results.read_text())
    assert sections is not None
    loop_quality.write_section(results, sections["loop"])

    text = results.read_text()  # written again: replaced in place, not added twice
    assert text.count("<!-- results:loop -->") == text.count("<!-- results:targets -->") == 1
    assert text.index("results:drift") < text.index("results:loop") < text.index("targets")
    assert "## G. Loop quality" in text
    assert "Retraining recovery" in text
    figures = json.loads(out.read_text())
    sizes = loop_quality.QUICK
    assert [r["name"] for r in figures["regimes"]] == ["demo", "small", "large"]
    assert [r["method"] for r in figures["regimes"]] == ["ks", "ks", "wasserstein"]
    for regime in figures["regimes"]:
        assert 0 <= regime["false_alarm_rate"] <= 1
        assert 0 <= regime["feature_detection_rate"] <= 1
    assert len(figures["narrow_windows"]) == 2 * len(sizes.narrow_rows)
    assert len(figures["estimates"]) == 5
    assert all(e["abs_error_max_pp"] >= 0 for e in figures["estimates"])


@pytest.mark.postgres
async def test_in_memory_reads_equal_the_database(
    postgres_url: str, artifacts: Artifacts, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, artifact_dir=tmp_path / "artifacts")
    model = artifacts.tabular
    assert model.feature_names is not None
    rng = np.random.default_rng(3)
    reference_rows, reference_labels = rng.normal(size=(1_500, 30)), rng.integers(0, 2, 1_500)
    validation = loop_quality.validation_items(
        model.feature_names, reference_rows, reference_labels
    )
    versions = {
        "demo": loop_quality.register(model, "loop_demo", model.validation, settings),
        "large": loop_quality.register(model, "loop_large", validation, settings),
    }
    cases = []
    for name in versions:
        for shift in (0.0, 1.0):
            rows, labels = rng.normal(size=(600, 30)), rng.integers(0, 2, 600)
            rows[:, 0] += shift
            cases.append((name, rows, labels))

    checks = await loop_quality.check_postgres(postgres_url, versions, cases)

    assert [c["differing"] for c in checks] == [[]] * 4
    assert [c["rows"] for c in checks] == [600] * 4
