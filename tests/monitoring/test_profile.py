"""Reference profiles of tabular validation data: quantile bins that every value falls in,
raw values kept only while a KS test can use them."""

from __future__ import annotations

import numpy as np
import pytest

from predictd.monitoring.drift_stats import SMALL_REFERENCE
from predictd.monitoring.profile import numeric_profile, reference_profile


def test_tabular_profile() -> None:
    rng = np.random.default_rng(1)
    rows = [{"a": float(x), "b": float(y)} for x, y in rng.normal(size=(300, 2))]
    profile = reference_profile(rows, ["x"] * 200 + [1] * 100, [0.95] * 250 + [None] * 50)
    a = profile["features"]["a"]
    assert a["count"] == 300
    assert sum(a["counts"]) == 300
    assert len(a["counts"]) == len(a["edges"]) + 1 == len(a["centres"])
    assert max(a["counts"]) - min(a["counts"]) <= 2  # quantile bins: equal shares
    assert a["mean"] == pytest.approx(np.mean([r["a"] for r in rows]))
    assert len(a["values"]) == 300
    assert profile["predicted_labels"] == {"x": 200, "1": 100}
    assert profile["confidence_bins"][9] == 250


def test_large_references_keep_bins_not_values() -> None:
    big = numeric_profile([float(v) for v in range(SMALL_REFERENCE + 1)])
    assert "values" not in big
    assert sum(big["counts"]) == SMALL_REFERENCE + 1
    assert numeric_profile([float("nan")]) == {"count": 0}
    constant = numeric_profile([2.0] * 10)
    assert (constant["counts"], constant["std"]) == ([10], 0.0)
