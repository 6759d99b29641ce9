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
    wasserstein_normalised,
)
from predictd.monitoring.profile import numeric_profile


def binned(values: np.ndarray, edges: np.ndarray) -> list[float]:
    counts, _ = np.histogram(values, bins=edges)
    return [float(c) for c in counts]


@pytest.mark.parametrize(
    ("reference_size", "window", "method"),
    [(500, 800, "ks"), (50_000, 2_000, "wasserstein"), (50_000, 800, "chi_square")],
    ids=["small-ks", "large-wasserstein", "small-window-chi2"],
)
def test_numeric_shift_is_found_and_no_shift_is_not(
    reference_size: int, window: int, method: str
) -> None:
    rng = np.random.default_rng(42)
    reference = rng.normal(10.0, 2.0, reference_size)
    same = rng.normal(10.0, 2.0, window)
    shifted = rng.normal(11.5, 2.0, window)
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
        assert result.method == method
        return result.drifted

    assert check(same) is False
    assert check(shifted) is True


def test_a_small_window_against_a_large_reference_is_tested_not_measured() -> None:
    """On 200 rows the normalised Wasserstein distance is mostly sampling noise: windows from
    the reference's own population pass 0.1 for about two features in five. A chi-square test
    on the reference's bins keeps such false alarms near its p-value and still finds a
    +0.5 sd shift."""
    rng = np.random.default_rng(11)
    reference = numeric_profile([float(v) for v in rng.normal(0.0, 1.0, 5_000)])
    edges, centres, counts = reference["edges"], reference["centres"], reference["counts"]

    def window(shift: float) -> list[float]:
        values = rng.normal(shift, 1.0, 200)
        return [float(c) for c in np.bincount(np.searchsorted(edges, values, side="right"),
                                              minlength=len(edges) + 1)]  # fmt: skip

    noise = [wasserstein_normalised(centres, counts, window(0.0), reference["std"])
             for _ in range(400)]  # fmt: skip
    same = [numeric_drift(None, None, centres, counts, window(0.0), reference["std"])
            for _ in range(400)]  # fmt: skip
    moved = [numeric_drift(None, None, centres, counts, window(0.5), reference["std"])
             for _ in range(400)]  # fmt: skip

    assert np.mean([d >= 0.1 for d in noise]) > 0.3
    assert {r.method for r in same + moved} == {"chi_square"}
    assert np.mean([r.drifted for r in same]) < 0.1
    assert np.mean([r.drifted for r in moved]) > 0.95


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
