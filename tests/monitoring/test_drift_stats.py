"""Drift statistics on synthetic data with fixed seeds: a shifted stream is detected, an
unshifted one is not, by each method; PSI and Jensen-Shannon match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from predictd.monitoring.drift_stats import (
    SMALL_REFERENCE,
    categorical_drift,
    jensen_shannon,
    numeric_drift,
    psi,
)


def binned(values: np.ndarray, edges: np.ndarray) -> list[float]:
    counts, _ = np.histogram(values, bins=edges)
    return [float(c) for c in counts]


@pytest.mark.parametrize("reference_size", [500, 50_000], ids=["small-ks", "large-wasserstein"])
def test_numeric_shift_is_found_and_no_shift_is_not(reference_size: int) -> None:
    rng = np.random.default_rng(42)
    reference = rng.normal(10.0, 2.0, reference_size)
    same = rng.normal(10.0, 2.0, 800)
    shifted = rng.normal(11.5, 2.0, 800)
    edges = np.quantile(reference, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    finite = np.quantile(reference, np.linspace(0.05, 0.95, 10))
    ref_counts = binned(reference, edges)
    sample = list(reference) if reference_size <= SMALL_REFERENCE else None

    def check(current: np.ndarray) -> bool:
        result = numeric_drift(
            sample, list(current), list(finite), ref_counts, binned(current, edges),
            float(reference.std()),
        )  # fmt: skip
        assert result.method == ("ks" if sample else "wasserstein")
        return result.drifted

    assert check(same) is False
    assert check(shifted) is True


@pytest.mark.parametrize("reference_rows", [600, 20_000], ids=["small-chi2", "large-js"])
def test_categorical_shift_is_found_and_no_shift_is_not(reference_rows: int) -> None:
    rng = np.random.default_rng(7)
    levels = ["a", "b", "c"]

    def counts(p: list[float], n: int) -> dict[str, float]:
        drawn = rng.choice(levels, size=n, p=p)
        return {level: float((drawn == level).sum()) for level in levels}

    reference = counts([0.5, 0.3, 0.2], reference_rows)
    same = categorical_drift(reference, counts([0.5, 0.3, 0.2], 900), reference_rows)
    moved = categorical_drift(reference, counts([0.2, 0.3, 0.5], 900), reference_rows)
    assert same.method == moved.method == ("chi_square" if reference_rows <= 1000 else
                                           "jensen_shannon")  # fmt: skip
    assert (same.drifted, moved.drifted) == (False, True)
    new_category = categorical_drift({"a": 10.0}, {"a": 5.0, "z": 5.0}, 10)
    assert new_category.drifted


def test_psi_and_jensen_shannon_by_hand() -> None:
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert psi([25, 75], [50, 50]) == pytest.approx(expected)
    assert psi([1, 2, 3], [1, 2, 3]) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon([3, 1], [3, 1]) == pytest.approx(0.0)
    assert jensen_shannon([0, 0], [1, 1]) == 0.0  # nothing to compare: no alarm
