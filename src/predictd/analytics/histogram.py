"""Latency percentiles from the rollups' fixed-bucket histogram."""

from __future__ import annotations

from collections.abc import Sequence

from predictd.db.tables import LATENCY_BOUNDS_MS

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, interpolated linearly inside its bucket;
    the open last bucket answers its lower bound."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
            if i == len(LATENCY_BOUNDS_MS):
                return float(low)
            high = LATENCY_BOUNDS_MS[i]
            return float(low + (high - low) * max(0.0, rank - seen) / n)
        seen += n
    return float(LATENCY_BOUNDS_MS[-1])


def latency_quantiles(histogram: Sequence[int]) -> dict[str, float | None]:
    return {name: percentile(histogram, q) for name, q in QUANTILES.items()}
