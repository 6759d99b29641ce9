"""The statistics of drift, as pure functions over counts or samples.

The test fits the data. With a small reference (at most ``SMALL_REFERENCE`` rows) a
hypothesis test says whether the difference could be chance: two-sample Kolmogorov-Smirnov for
numeric features, chi-square for categorical ones (drift at p < 0.05). With more data every
tiny difference becomes "significant", so a distance says how big it is instead: Wasserstein
distance normalised by the reference's standard deviation for numeric features, Jensen-Shannon
distance for categorical ones (drift at >= 0.1). A distance needs much data on both sides,
though: on a window of a few hundred rows it is mostly sampling noise (200-row windows drawn
from a 5,000-row reference's own population put 44% of numeric features past 0.1, benchmarks
part G), so a numeric feature with at most ``SMALL_REFERENCE`` values in the window is tested
instead, by chi-square on the reference's bins. PSI is reported beside either, since it is
what many teams already watch. Numeric inputs arrive as counts per reference-quantile bin (the
database counts them), categorical ones as counts per category.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# scipy.stats and scipy.spatial cost ~0.5 s to import: loaded on the first drift report, not at
# every server start (the statistics below import them where they are used).

SMALL_REFERENCE = 1000
PSI_EPSILON = 1e-4  # stands in for an empty bin, so PSI stays finite

Method = Literal["ks", "chi_square", "wasserstein", "jensen_shannon"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    p_value: float = 0.05
    distance: float = 0.1


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    method: Method
    statistic: float
    p_value: float | None  # hypothesis tests only
    psi: float
    drifted: bool


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index over the same bins: sum (a - e) * ln(a / e)."""
    value = 0.0
    for e, a in zip(_shares(reference), _shares(current), strict=True):
        e, a = max(e, PSI_EPSILON), max(a, PSI_EPSILON)
        value += (a - e) * math.log(a / e)
    return value


def jensen_shannon(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance in base 2: 0 for equal distributions, 1 for disjoint ones."""
    if not sum(reference) or not sum(current):
        return 0.0
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(_shares(reference), _shares(current), base=2))


def wasserstein_normalised(
    centres: Sequence[float],
    reference: Sequence[float],
    current: Sequence[float],
    reference_std: float,
) -> float:
    """Earth mover's distance between two binned distributions, in reference standard
    deviations, so one threshold fits features of any scale."""
    if not sum(reference) or not sum(current):
        return 0.0
    from scipy.stats import wasserstein_distance

    distance = wasserstein_distance(centres, centres, reference, current)
    return float(distance / reference_std) if reference_std > 0 else float(distance)


def chi_square(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors; categories empty on both sides
    are dropped. Returns (statistic, p-value)."""
    kept = [(r, c) for r, c in zip(reference, current, strict=True) if r or c]
    if len(kept) < 2 or not sum(r for r, _ in kept) or not sum(c for _, c in kept):
        return 0.0, 1.0
    from scipy.stats import chi2_contingency

    result = chi2_contingency([[r for r, _ in kept], [c for _, c in kept]])
    return float(result.statistic), float(result.pvalue)


def numeric_drift(
    reference_values: Sequence[float] | None,
    current_values: Sequence[float] | None,
    centres: Sequence[float],
    reference_counts: Sequence[float],
    current_counts: Sequence[float],
    reference_std: float,
    thresholds: Thresholds = Thresholds(),
) -> FeatureDrift:
    """KS on the samples when the reference is small (and both samples are given); chi-square
    on the bins when only the window is small; else the normalised Wasserstein distance on the
    bins."""
    index = psi(reference_counts, current_counts)
    small = reference_values is not None and len(reference_values) <= SMALL_REFERENCE
    if small and reference_values is not None and current_values:
        from scipy.stats import ks_2samp

        result = ks_2samp(reference_values, current_values)
        p = float(result.pvalue)
        return FeatureDrift("ks", float(result.statistic), p, index, p < thresholds.p_value)
    if sum(current_counts) <= SMALL_REFERENCE:
        statistic, p = chi_square(reference_counts, current_counts)
        return FeatureDrift("chi_square", statistic, p, index, p < thresholds.p_value)
    distance = wasserstein_normalised(centres, reference_counts, current_counts, reference_std)
    return FeatureDrift("wasserstein", distance, None, index, distance >= thresholds.distance)


def categorical_drift(
    reference: Mapping[str, float],
    current: Mapping[str, float],
    reference_rows: int,
    thresholds: Thresholds = Thresholds(),
) -> FeatureDrift:
    """Chi-square when the reference is small, else the Jensen-Shannon distance; categories
    only one side has seen count as zero on the other."""
    categories = sorted(set(reference) | set(current))
    ref = [reference.get(c, 0.0) for c in categories]
    cur = [current.get(c, 0.0) for c in categories]
    index = psi(ref, cur)
    if reference_rows <= SMALL_REFERENCE:
        statistic, p = chi_square(ref, cur)
        return FeatureDrift("chi_square", statistic, p, index, p < thresholds.p_value)
    distance = jensen_shannon(ref, cur)
    return FeatureDrift("jensen_shannon", distance, None, index, distance >= thresholds.distance)


def binned_std(centres: Sequence[float], counts: Sequence[float]) -> float:
    """The standard deviation of a distribution known only as counts per bin."""
    total = float(sum(counts))
    if not total:
        return 0.0
    mean = sum(c * n for c, n in zip(centres, counts, strict=True)) / total
    return math.sqrt(sum(n * (c - mean) ** 2 for c, n in zip(centres, counts, strict=True)) / total)


def binned_drift(
    centres: Sequence[float],
    reference_counts: Sequence[float],
    current_counts: Sequence[float],
    reference_rows: int,
    thresholds: Thresholds = Thresholds(),
) -> FeatureDrift:
    """A numeric distribution kept only as counts per bin (the confidence deciles): chi-square
    on the bins when the reference is small, else the normalised Wasserstein distance."""
    index = psi(reference_counts, current_counts)
    if reference_rows <= SMALL_REFERENCE:
        statistic, p = chi_square(reference_counts, current_counts)
        return FeatureDrift("chi_square", statistic, p, index, p < thresholds.p_value)
    std = binned_std(centres, reference_counts)
    distance = wasserstein_normalised(centres, reference_counts, current_counts, std)
    return FeatureDrift("wasserstein", distance, None, index, distance >= thresholds.distance)
